"""``boot``: the boot alone, at 101 and 500 agents in 10 priority groups (each group started
once the previous one is ready), against two anchors booted in the same run, the three
interleaved with their order rotated run by run (the database created first, as
``coffee-team start`` does before it boots supervisord):

- ``sleepers``: supervisord spawning N bare ``python -c 'import time; time.sleep(1e9)'``
  programs at one priority (one pass of its loop): the bare-process limit of a boot;
- ``plain``: supervisord starting the agents' own commands at once, unstaggered (no order).

Each coffee boot is also taken apart group by group (boot_groups.py: asked, forked, ready,
seen, RUNNING, CPU), and can be made by `coffee-team start` (kind ``start``) or with the code
before a change (``before``, ``before_start``: boot_report.py --before DIR). RUNNING comes from
supervisord's log and ready by inotify: nothing polls supervisord while it boots.
supervisord's fds after the boot vs minfds.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import collections
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

import psutil

from lifecycle_common import (PY, RESTART_SETTINGS, agents_of, bench_project, events, log, role,
                              summary, tree_cpu)
from lifecycle_common import create_database, write_plain_config
from lifecycle_scale import scale_agents, write_plain_team
from boot_groups import (CpuSampler, FirstWrites, SupervisordLog, group_report, median_report,
                         supervisord_times, table)
from tests.harness import BIN, Project, WaitTimeout, boot_supervisord, clean_env
from coffee_team.heartbeat import read_heartbeat
from coffee_team.watchdog.policy import started_since

BOOT_SIZES = (101, 500)
BOOT_TARGET_RATIO = 1.5  # issue 29: all RUNNING within 1.5x of the sleepers, order kept
KINDS = ("team", "sleepers", "plain")
# a team's boot: supervisord booted directly, or by `coffee-team start` (which waits, polling,
# until every agent runs); "before…": the same with the checkout given as ``before``
TEAM_KINDS = {"team": "", "before": "before_", "start": "start_",
              "before_start": "before_start_"}
SLEEPER = f"{PY} -c 'import time; time.sleep(1e9)'"


def bench_boot(repeat: int, quick: bool, sizes: tuple[int, ...] = BOOT_SIZES,
               kinds: tuple[str, ...] = KINDS, before: str | None = None) -> dict:
    """``kinds``: which boots each run makes, their order rotated run by run; ``before``
    (with the kind ``before``): a checkout of the code before a change, booted the same way."""
    del quick  # a boot has no window to shorten; --quick only means fewer runs
    out = {}
    for n in sizes:
        res: dict[str, list] = collections.defaultdict(list)
        reports: dict[str, list] = {k: [] for k in TEAM_KINDS}
        minfds = None
        for r in range(repeat):
            run = f"boot {n} run {r + 1}/{repeat}"
            for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                if kind in TEAM_KINDS:
                    report, minfds = boot_team(res, n, before if "before" in kind else None,
                                               TEAM_KINDS[kind], via_start="start" in kind)
                    reports[kind].append(report)
                    log(f"{run}: {kind}\n" + table(report))
                elif kind == "sleepers":
                    boot_sleepers(res, n)
                else:
                    boot_plain(res, n)
            log(f"{run}: " + "; ".join(f"{k} {v[-1]:.2f}" for k, v in res.items()
                                       if v and (k.endswith("boot_s") or k.endswith("ready_s")
                                                 or k.endswith("cpu_s"))))
        out[str(n)] = {**{k: summary(v) for k, v in res.items() if v}, "agents": n,
                       "priority_groups": 10, "runs": repeat, "minfds": minfds,
                       "target_ratio": BOOT_TARGET_RATIO, **ratios(res),
                       **{("groups" if k == "team" else f"{k}_groups"): median_report(v)
                          for k, v in reports.items() if v},
                       "reports": reports}
    return out


def ratios(res: dict) -> dict:
    """Ratios of medians, each where both sides were measured."""
    def med(key):
        return statistics.median(res[key]) if res.get(key) else None
    pairs = {"sleepers_ratio": ("boot_s", "sleepers_boot_s"),
             "boot_ratio": ("boot_s", "baseline_boot_s"),
             "ready_ratio": ("boot_ready_s", "baseline_ready_s"),
             "ready_sleepers_ratio": ("boot_ready_s", "sleepers_boot_s"),
             "before_sleepers_ratio": ("before_s", "sleepers_boot_s"),
             "start_sleepers_ratio": ("start_s", "sleepers_boot_s"),
             "before_start_sleepers_ratio": ("before_start_s", "sleepers_boot_s"),
             "cpu_sleepers_ratio": ("boot_cpu_s", "sleepers_cpu_s"),
             "before_cpu_sleepers_ratio": ("before_cpu_s", "sleepers_cpu_s")}
    return {k: med(a) / med(b) for k, (a, b) in pairs.items() if med(a) and med(b)}


def boot_team(res: dict, n: int, code: str | None = None, prefix: str = "",
              via_start: bool = False) -> tuple[dict, int]:
    """One boot of the team; its group-by-group report (boot_groups.py) and minfds. ``code``:
    a checkout whose coffee_team supervisord and every program import instead (PYTHONPATH),
    so code from before a change boots in the same session, on its own config and team
    snapshot (an agent would parse the YAML on another checkout's snapshot). ``via_start``:
    booted by `coffee-team start`, whose return is also timed (``…returned_s``)."""
    with bench_project(fast=True) as proj:
        proj.write_team(scale_agents(n), start_seconds=1, **RESTART_SETTINGS)
        if code:
            write_config_with(code, proj)
        create_database(proj)
        cpu = CpuSampler()
        wall0 = time.time()
        try:
            running_s, ready_s, beats, started = boot_and_wait(
                proj, list(proj.team.names), env={"PYTHONPATH": code} if code else None,
                via_start=via_start)
            for key, value in (started or {}).items():
                res[prefix + key].append(value)
        finally:
            samples = cpu.close()
        add_cpu(res, prefix.rstrip("_") or "boot", proj)
        res[f"{prefix or 'boot_'}s"].append(running_s)
        res[f"{prefix or 'boot_'}ready_s"].append(ready_s)
        res[prefix + "supervisord_fds"].append(
            psutil.Process(proj.supervisord_pid()).num_fds())
        res[prefix + "groups_not_ready"].append(len(events(proj, "group_not_ready")))
        watchdog_started = process_started(proj, "watchdog")
        spawned, running = supervisord_times(proj.team.log_dir / "supervisord.log")
        report = group_report({a.name: a.priority for a in proj.team.agents}, events(proj),
                              spawned, running, beats.first, samples, wall0, watchdog_started,
                              beats.cpu)
        res[prefix + "first_spawn_s"].append(report["groups"][0]["first_spawn_s"])
        res[prefix + "watchdog_started_s"].append(watchdog_started - wall0)
        res[prefix + "agent_rss_mb"].append(agents_rss_median(proj))
        minfds = int(re.search(r"^minfds=(\d+)$", proj.conf.read_text(), re.M)[1])
    return report, minfds


def write_config_with(code: str, proj: Project) -> None:
    """Write the project's config and team snapshot again with the checkout ``code``."""
    script = ("import sys; from coffee_team import layout; from coffee_team.team import "
              "load_team; layout.write_config(load_team(sys.argv[1]))")
    subprocess.run([PY, "-c", script, str(proj.team_file)], check=True, cwd=proj.root,
                   env=clean_env({"PYTHONPATH": code}), timeout=120)


def add_cpu(res: dict, kind: str, proj: Project) -> None:
    """CPU seconds the boot's processes used up to all RUNNING/ready, by role (what the
    boot costs whatever else the machine does: the wall times above depend on that)."""
    by_role: dict[str, float] = {}
    for r, secs in tree_cpu(proj.tree()).values():
        by_role[r] = by_role.get(r, 0.0) + secs
    res[f"{kind}_cpu_s"].append(sum(by_role.values()))
    res[f"{kind}_cpu_agents_s"].append(by_role.get("agent", 0.0) + by_role.get("other", 0.0)
                                       + by_role.get("sleep", 0.0))
    res[f"{kind}_cpu_supervisord_s"].append(by_role.get("supervisord", 0.0))
    if "watchdog" in by_role:
        res[f"{kind}_cpu_watchdog_s"].append(by_role["watchdog"])


def agents_rss_median(proj: Project) -> float:
    """The median VmRSS of the team's agents (MB), a few seconds after the boot."""
    time.sleep(3)  # past each agent's first periodic run
    rss = []
    for p in agents_of(proj):
        try:
            rss.append(p.memory_info().rss / 2**20)
        except psutil.Error:
            pass
    return statistics.median(rss) if rss else float("nan")


def process_started(proj: Project, kind: str) -> float:
    """When the project's process of that role was created (epoch seconds; nan if none)."""
    for p in proj.tree():
        try:
            if role(p) == kind:
                return p.create_time()
        except psutil.Error:
            pass
    return float("nan")


def boot_sleepers(res: dict, n: int) -> None:
    with bench_project("cbs-", fast=True) as base:
        programs = {f"s{i:03d}": SLEEPER for i in range(n)}
        write_plain_config(base, programs, extra="stopwaitsecs=5\n")
        wall0 = time.time()
        log_path = base.root / "data" / "logs" / "supervisord.log"
        running, _, _, _ = boot_and_wait(base, list(programs), ready=False, log_path=log_path)
        add_cpu(res, "sleepers", base)
        res["sleepers_boot_s"].append(running)
        spawned, up = supervisord_times(log_path)
        if spawned:  # supervisord's fork loop alone, and when the last sleeper was RUNNING
            res["sleepers_first_spawn_s"].append(min(spawned.values()) - wall0)
            res["sleepers_spread_s"].append(max(spawned.values()) - min(spawned.values()))
            res["sleepers_last_running_s"].append(max(up.values(), default=wall0) - wall0)


def boot_plain(res: dict, n: int) -> None:
    with bench_project("cbb-", fast=True) as base:
        programs = write_plain_team(base, n)
        create_database(base)
        running, ready, _, _ = boot_and_wait(base, list(programs),
                                          log_path=base.root / "data" / "logs" / "supervisord.log")
        add_cpu(res, "baseline", base)
        res["baseline_boot_s"].append(running)
        res["baseline_ready_s"].append(ready)


def reap(proc: subprocess.Popen) -> float | None:
    """The CPU seconds (user + system) ``proc`` used, if it has ended (reaped here)."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if not pid:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def boot_and_wait(proj: Project, names: list[str], timeout: float = 300,
                  interval: float = 0.1, ready: bool = True, env: dict | None = None,
                  log_path: Path | None = None, via_start: bool = False
                  ) -> tuple[float, float | None, FirstWrites | None, dict | None]:
    """Boot supervisord; seconds until every name was RUNNING and (``ready``) until every
    agent's first heartbeat was written, and the FirstWrites that saw them (each agent's
    first heartbeat, epoch, and its CPU then). Both are exact and cost supervisord nothing:
    RUNNING from its log (boot_groups.SupervisordLog), the heartbeats by inotify; the same
    way for every kind of boot. (Polling getAllProcessInfo every 0.2 s, as this did, took
    half of supervisord's CPU at 500 programs, and more the longer a boot took.)"""
    log_path = log_path or proj.team.log_dir / "supervisord.log"
    beats = FirstWrites(proj.team.status_dir) if ready else None
    try:
        if via_start:  # as a user boots it; it returns once every agent is RUNNING
            t0 = time.perf_counter()
            said = open(proj.root / "start.out", "w+")  # a file: a pipe could fill and block it
            start = subprocess.Popen([str(BIN / "coffee-team"), "--team", str(proj.team_file),
                                      "start", "--timeout", str(timeout)],
                                     env=clean_env(env), cwd=proj.root, stdin=subprocess.DEVNULL,
                                     stdout=said, stderr=subprocess.STDOUT)
        else:
            t0 = boot_supervisord(proj, env=env, answer_within=timeout)
        wall0 = time.time() - (time.perf_counter() - t0)
        log = SupervisordLog(log_path)
        returned = None
        while True:
            log.poll()
            up = all(n in log.running for n in names)
            if via_start and returned is None and (cli_cpu := reap(start)) is not None:
                returned = {"returned_s": time.perf_counter() - t0,
                            "cli_cpu_s": cli_cpu}  # start's own CPU: it polls all the while
                if start.returncode:
                    said.seek(0)
                    raise RuntimeError(f"coffee-team start exited {start.returncode}: "
                                       f"{said.read()[-500:]}")
            if up and (beats is None or all(n in beats.first for n in names)) and \
                    (returned is not None or not via_start):
                break
            if time.perf_counter() > t0 + timeout:
                raise WaitTimeout(f"boot of {len(names)}: not RUNNING/ready in {timeout}s")
            time.sleep(interval)
    finally:
        first = beats.close() if beats is not None else {}
        if via_start:
            said.close()
    proj.remember()  # the agents too, should they outlive supervisord
    running_s = max(log.running[n] for n in names) - wall0
    if beats is not None:  # the files agree: every heartbeat is from an instance of this boot
        stale = [n for n in names if not started_since(read_heartbeat(proj.team.status_dir, n),
                                                       wall0)]
        if stale:
            raise RuntimeError(f"heartbeats not from this boot: {', '.join(stale[:5])}")
    return running_s, (max(first[n] for n in names) - wall0) if ready else None, beats, returned
