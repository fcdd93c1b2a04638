"""``boot``: the boot alone, at 101 and 500 agents in 10 priority groups (each group started
once the previous one is ready), against two anchors booted in the same run, the three
interleaved with their order rotated run by run (the database created first, as
``coffee-team start`` does before it boots supervisord):

- ``sleepers``: supervisord spawning N bare ``python -c 'import time; time.sleep(1e9)'``
  programs at one priority (one pass of its loop): the bare-process limit of a boot;
- ``plain``: supervisord starting the agents' own commands at once, unstaggered (no order).

Each coffee boot is also taken apart group by group from the watchdog's journal: when each
group was spawned (its ``launched`` events), how long it took to get ready (``group_ready``'s
``waited``); and what came before the first group (supervisord, then the watchdog's own
start). The last group is RUNNING ``startsecs`` (1 s) after its spawn. supervisord's fds after the boot vs minfds.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import re
import statistics
import time

import psutil

from lifecycle_common import (PY, RESTART_SETTINGS, agents_of, bench_project, events, log, role,
                              summary, tree_cpu)
from lifecycle_common import write_plain_config
from lifecycle_scale import scale_agents, write_plain_team
from tests.harness import Project, WaitTimeout, boot_supervisord
from coffee_team.heartbeat import read_heartbeat
from coffee_team.queue import MessageQueue
from coffee_team.watchdog.policy import started_since

BOOT_SIZES = (101, 500)
BOOT_TARGET_RATIO = 1.5  # issue 29: all RUNNING within 1.5x of the sleepers, order kept
KEYS = ("boot_s", "boot_ready_s", "sleepers_boot_s", "baseline_boot_s", "baseline_ready_s",
        "watchdog_started_s", "first_spawn_s", "supervisord_fds", "groups_not_ready",
        "agent_rss_mb", "boot_cpu_s", "boot_cpu_agents_s", "boot_cpu_supervisord_s",
        "boot_cpu_watchdog_s", "sleepers_cpu_s", "sleepers_cpu_agents_s",
        "sleepers_cpu_supervisord_s", "baseline_cpu_s", "baseline_cpu_agents_s",
        "baseline_cpu_supervisord_s")
SLEEPER = f"{PY} -c 'import time; time.sleep(1e9)'"


def bench_boot(repeat: int, quick: bool, sizes: tuple[int, ...] = BOOT_SIZES) -> dict:
    del quick  # a boot has no window to shorten; --quick only means fewer runs
    out = {}
    for n in sizes:
        res: dict[str, list] = {k: [] for k in KEYS}
        timelines = []
        minfds = None
        for r in range(repeat):
            run = f"boot {n} run {r + 1}/{repeat}"
            kinds = ["team", "sleepers", "plain"]
            for kind in kinds[r % 3:] + kinds[:r % 3]:
                if kind == "team":
                    timeline, minfds = boot_team(res, n)
                    timelines.append(timeline)
                elif kind == "sleepers":
                    boot_sleepers(res, n)
                else:
                    boot_plain(res, n)
            log(f"{run}: CPU team {res['boot_cpu_s'][-1]:.2f}s (agents "
                f"{res['boot_cpu_agents_s'][-1]:.2f}s), sleepers {res['sleepers_cpu_s'][-1]:.2f}s "
                f"(sleepers {res['sleepers_cpu_agents_s'][-1]:.2f}s), plain "
                f"{res['baseline_cpu_s'][-1]:.2f}s")
            log(f"{run}: RUNNING {res['boot_s'][-1]:.2f}s, ready {res['boot_ready_s'][-1]:.2f}s "
                f"(watchdog started at {res['watchdog_started_s'][-1]:.2f}s, first group "
                f"spawned at {res['first_spawn_s'][-1]:.2f}s); sleepers RUNNING "
                f"{res['sleepers_boot_s'][-1]:.2f}s; plain RUNNING "
                f"{res['baseline_boot_s'][-1]:.2f}s, ready {res['baseline_ready_s'][-1]:.2f}s")
        median = statistics.median
        out[str(n)] = {**{k: summary(v) for k, v in res.items()}, "agents": n,
                       "priority_groups": 10, "runs": repeat, "minfds": minfds,
                       "target_ratio": BOOT_TARGET_RATIO,
                       "sleepers_ratio": median(res["boot_s"]) / median(res["sleepers_boot_s"]),
                       "boot_ratio": median(res["boot_s"]) / median(res["baseline_boot_s"]),
                       "ready_ratio": median(res["boot_ready_s"])
                       / median(res["baseline_ready_s"]),
                       "groups": group_medians(timelines), "timelines": timelines}
    return out


def create_database(proj: Project) -> None:
    """As `coffee-team start` does before it boots supervisord (the agents then find the
    schema made, in the team's boot and in the plain one alike)."""
    MessageQueue.from_team(proj.team).close()


def boot_team(res: dict, n: int) -> tuple[list[dict], int]:
    with bench_project(fast=True) as proj:
        proj.write_team(scale_agents(n), start_seconds=1, **RESTART_SETTINGS)
        create_database(proj)
        wall0 = time.time()
        running_s, ready_s = boot_and_wait(proj, list(proj.team.names))
        add_cpu(res, "boot", proj)
        res["boot_s"].append(running_s)
        res["boot_ready_s"].append(ready_s)
        res["supervisord_fds"].append(psutil.Process(proj.supervisord_pid()).num_fds())
        res["groups_not_ready"].append(len(events(proj, "group_not_ready")))
        timeline = group_timeline(proj, wall0)
        res["first_spawn_s"].append(timeline[0]["spawned_s"] if timeline else float("nan"))
        res["watchdog_started_s"].append(process_started(proj, "watchdog") - wall0)
        res["agent_rss_mb"].append(agents_rss_median(proj))
        minfds = int(re.search(r"^minfds=(\d+)$", proj.conf.read_text(), re.M)[1])
    return timeline, minfds


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
    if f"{kind}_cpu_watchdog_s" in res:
        res[f"{kind}_cpu_watchdog_s"].append(by_role.get("watchdog", 0.0))


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
        running, _ = boot_and_wait(base, list(programs), ready=False)
        add_cpu(res, "sleepers", base)
        res["sleepers_boot_s"].append(running)


def boot_plain(res: dict, n: int) -> None:
    with bench_project("cbb-", fast=True) as base:
        programs = write_plain_team(base, n)
        create_database(base)
        running, ready = boot_and_wait(base, list(programs))
        add_cpu(res, "baseline", base)
        res["baseline_boot_s"].append(running)
        res["baseline_ready_s"].append(ready)


def boot_and_wait(proj: Project, names: list[str], timeout: float = 300,
                  interval: float = 0.2, ready: bool = True) -> tuple[float, float | None]:
    """Boot supervisord; seconds until every name was RUNNING and (``ready``) until every
    agent's heartbeat was written by an instance started after the boot, both polled every
    ``interval`` the same way for every kind of boot."""
    t0 = boot_supervisord(proj, answer_within=timeout)
    wall0 = time.time() - (time.perf_counter() - t0)
    status_dir = proj.team.status_dir if ready else None
    running_at = None
    ready_at = None if ready else t0
    pending = set(names)
    while running_at is None or ready_at is None:
        now = time.perf_counter()
        if now > t0 + timeout:
            raise WaitTimeout(f"boot of {len(names)}: not RUNNING/ready in {timeout}s")
        if running_at is None:
            try:
                infos = proj.infos()
            except OSError:  # supervisord too busy spawning to answer in time: poll again
                infos = {}
            if all(infos.get(n, {}).get("statename") == "RUNNING" for n in names):
                running_at = now
        if ready_at is None:
            pending = {n for n in pending
                       if not started_since(read_heartbeat(status_dir, n), wall0)}
            if not pending:
                ready_at = now
        time.sleep(interval)
    proj.remember()  # the agents too, should they outlive supervisord
    return running_at - t0, (ready_at - t0) if ready else None


def group_timeline(proj: Project, wall0: float) -> list[dict]:
    """Per priority group, from the journal (seconds since supervisord was started): spawned
    (its first ``launched`` event, written right after the group's one multicall) and ready
    after (the watchdog's wait). (Its RUNNING events are journaled once the launch is over.)"""
    priority = {spec.name: spec.priority for spec in proj.team.agents}
    evs = events(proj)
    groups: dict[int, dict] = {}
    for e in evs:
        name = e.get("agent")
        if e["kind"] == "launched" and name in priority:
            g = groups.setdefault(priority[name], {"priority": priority[name], "agents": 0})
            g["agents"] += 1
            g["spawned_s"] = min(g.get("spawned_s", 1e18), e["ts"] - wall0)
        elif e["kind"] in ("group_ready", "group_not_ready"):
            detail = e.get("detail") or {}
            g = groups.setdefault(detail.get("priority"), {"priority": detail.get("priority"),
                                                           "agents": 0})
            g["ready_after_s"] = detail.get("waited")
            g["timed_out"] = e["kind"] == "group_not_ready"
    return [groups[p] for p in sorted(groups, key=lambda p: (p is None, p))]


def group_medians(timelines: list[list[dict]]) -> list[dict]:
    by: dict[int, dict[str, list]] = {}
    for timeline in timelines:
        for g in timeline:
            row = by.setdefault(g["priority"], {})
            for key in ("agents", "spawned_s", "ready_after_s"):
                if g.get(key) is not None:
                    row.setdefault(key, []).append(g[key])
    return [{"priority": p, **{k: statistics.median(v) for k, v in row.items()},
             **{f"{k}_max": max(v) for k, v in row.items() if k != "agents"}}
            for p, row in sorted(by.items(), key=lambda kv: (kv[0] is None, kv[0]))]
