"""``scale``: 100 agents under one supervisord (``scale500``: 500). Staggered boot (to all
RUNNING, to all ready) vs plain unstaggered supervisord with the same commands, status,
broadcast drain, a tenth of the team (at least 10) kill -9'd at once while holding a task, idle
CPU, fds, graceful shutdown rate, and what breaks first (log scan). The boot alone:
lifecycle_boot.py."""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import contextlib
import os
import signal
import statistics
import time
from types import SimpleNamespace

import psutil

from coffee_team import confgen
from coffee_team.heartbeat import read_heartbeat
from coffee_team.queue import MessageQueue
from coffee_team.team.spec import TeamSettings
from coffee_team.watchdog.policy import started_since
from lifecycle_common import (IDLE, RESTART_SETTINGS, agents_of, bench_project, create_database,
                              events, grep_count, idle_cpu, last_event_id, log, summary,
                              task_status_db, time_commands, wait_running, write_plain_config)
from tests.harness import Project, WaitTimeout, boot_supervisord, wait_until

KEYS = ("boot_s", "baseline_boot_s", "boot_ready_s", "baseline_ready_s", "status_s",
        "supervisorctl_s", "rpc_getAllProcessInfo_s", "rpc_getTeamStatus_s", "broadcast_drain_s",
        "crash_restarted", "crash_all_running_s", "crash_lateness_s", "crash_tasks_requeued",
        "crash_tasks_done_s", "idle_cpu_percent", "idle_cpu_watchdog_percent",
        "idle_cpu_supervisord_percent", "idle_cpu_agents_percent", "supervisord_fds",
        "agents_rss_total_mb", "shutdown_agents_per_s", "baseline_shutdown_agents_per_s")
SHUTDOWN_WINDOW = 10.0  # seconds of a graceful supervisord shutdown to time at scale
# idle windows span the team's 30 s health check (two of them when not --quick), where the
# watchdog's per-agent work happens
IDLE_WINDOW, QUICK_IDLE_WINDOW = 65.0, 35.0
BOOT_TARGETS = {100: 5.0, 500: 20.0}  # seconds to all RUNNING (issue #17 goals 3 and 4)


def bench_scale(repeat: int, quick: bool, n: int = 100) -> dict:
    res = {k: [] for k in KEYS}
    findings = []
    for r in range(repeat):
        findings += measure_team(res, n, quick, r, repeat)
        measure_plain_supervisord(res, n, f"scale run {r + 1}/{repeat}")
    out = {k: summary(v) for k, v in res.items()}
    out.update(agents=n, priority_groups=10, runs=repeat, findings=findings,
               crash_victims=crash_victims(n),
               boot_ratio=statistics.median(res["boot_s"]) / statistics.median(res["baseline_boot_s"]),
               ready_ratio=statistics.median(res["boot_ready_s"])
               / statistics.median(res["baseline_ready_s"]),
               status_ratio=statistics.median(res["status_s"]) / statistics.median(res["supervisorctl_s"]),
               target_boot_s=BOOT_TARGETS.get(n),
               listener_buffer_size=confgen.listener_buffer_size(
                   SimpleNamespace(agents=range(n), settings=TeamSettings())))
    return out


def scale_agents(n: int, groups: int = 10) -> dict:
    per = max(1, n // groups)
    return {f"a{i:03d}": {"priority": min(i // per, groups - 1), "check_interval": IDLE,
                          "handler": "coffee_team.agent.demo:handle",
                          "options": {"work_seconds": 0.01}} for i in range(n)}


def measure_team(res: dict, n: int, quick: bool, r: int, repeat: int) -> list:
    """Run ``r`` (from 0) of the coffee team; returns its findings, the log scan last."""
    run = f"scale run {r + 1}/{repeat}"
    findings = []
    with bench_project(fast=True) as proj:
        proj.write_team(scale_agents(n), start_seconds=1, **RESTART_SETTINGS)
        create_database(proj)  # as `coffee-team start` does; the baseline's the same way
        names = list(proj.team.names)
        running_s, ready_s = boot_and_wait(proj, names)
        res["boot_s"].append(running_s)
        res["boot_ready_s"].append(ready_s)
        log(f"{run}: {n} agents RUNNING in {running_s:.2f}s, ready in {ready_s:.2f}s "
            "(staggered)")
        measure_idle(res, proj, QUICK_IDLE_WINDOW if quick else IDLE_WINDOW)
        measure_status(res, proj, 3 if quick else 5)
        measure_broadcast(res, proj, r)
        problems = measure_crash(res, proj, names, n)
        findings += [f"run {r + 1}: {problem}" for problem in problems]
        log(f"{run}: status {statistics.median(res['status_s'][-3:]):.2f}s, broadcast "
            f"{res['broadcast_drain_s'][-1]:.2f}s, crash restarted "
            f"{res['crash_restarted'][-1]}/{crash_victims(n)} (RUNNING after "
            f"{res['crash_all_running_s'][-1] if res['crash_all_running_s'] else 'n/a'}s), "
            f"tasks requeued {res['crash_tasks_requeued'][-1]}, idle CPU "
            f"{res['idle_cpu_percent'][-1]:.2f}% (watchdog "
            f"{res['idle_cpu_watchdog_percent'][-1]:.2f}%)")
        findings.append({**supervisord_log_findings(proj), "run": r + 1})
        res["shutdown_agents_per_s"].append(shutdown_rate(proj, SHUTDOWN_WINDOW))
    return findings


def measure_plain_supervisord(res: dict, n: int, run: str) -> None:
    """The baseline: plain supervisord, the same commands, autostart=true, no stagger."""
    with bench_project("cbb-", fast=True) as base:
        programs = write_plain_team(base, n)
        create_database(base)
        running_s, ready_s = boot_and_wait(base, list(programs))
        res["baseline_boot_s"].append(running_s)
        res["baseline_ready_s"].append(ready_s)
        log(f"{run}: baseline {n} RUNNING in {running_s:.2f}s, ready in {ready_s:.2f}s")
        res["baseline_shutdown_agents_per_s"].append(shutdown_rate(base, SHUTDOWN_WINDOW))


def write_plain_team(base: Project, n: int) -> dict[str, str]:
    """The baseline's config: the agents' own commands as plain autostart programs."""
    base.write_team(scale_agents(n), stop_wait_seconds=5)
    programs = {spec.name: agent_command(base, spec) for spec in base.team.agents}
    write_plain_config(base, programs, extra=f"directory={base.root}\nstopwaitsecs=5\n"
                                             "environment=PYTHONUNBUFFERED=\"1\"\n")
    return programs


def agent_command(proj: Project, spec) -> str:
    """The command line coffee-team generates for an agent, with %(here)s expanded."""
    section = confgen.agent_section(proj.team, spec)
    command = next(line for line in section.splitlines()
                   if line.startswith("command="))[len("command="):]
    return command.replace("%(here)s", str(proj.conf.parent))


def boot_and_wait(proj: Project, names: list[str], timeout: float = 300,
                  interval: float = 0.2) -> tuple[float, float]:
    """Boot supervisord; seconds until every name was RUNNING, and until every agent was ready
    (its heartbeat file written by an instance started after the boot). Both are polled
    every ``interval`` the same way for the staggered boot and the baseline."""
    t0 = boot_supervisord(proj, answer_within=timeout)
    wall0 = time.time() - (time.perf_counter() - t0)
    status_dir = proj.team.status_dir
    running_at = ready_at = None
    pending = set(names)
    deadline = t0 + timeout
    while running_at is None or ready_at is None:
        now = time.perf_counter()
        if now > deadline:
            raise WaitTimeout(f"boot of {len(names)} agents: not RUNNING/ready in {timeout}s "
                              f"({'all' if running_at else 'not all'} RUNNING; {len(pending)} "
                              f"without a first heartbeat, e.g. {sorted(pending)[:3]})")
        if running_at is None:
            try:
                infos = proj.infos()
            except OSError:  # supervisord too busy spawning to answer in time: poll again
                infos = {}
            if all(infos.get(n, {}).get("statename") == "RUNNING" for n in names):
                running_at = now
        pending = {n for n in pending
                   if not started_since(read_heartbeat(status_dir, n), wall0)}
        if ready_at is None and not pending:
            ready_at = now
        time.sleep(interval)
    proj.remember()  # the agents too, should they outlive supervisord
    return running_at - t0, ready_at - t0


def measure_idle(res: dict, proj: Project, window: float) -> None:
    """Idle CPU of the whole tree by role, the agents' memory, supervisord's fds; from when
    the watchdog has worked through the boot's backlog of events (it journals each agent's
    RUNNING)."""
    names = set(proj.team.names)
    with contextlib.suppress(WaitTimeout):  # then measured anyway
        wait_until(lambda: {e["agent"] for e in events(proj, "running")} >= names, 300, 1.0,
                   "the watchdog to handle every agent's RUNNING event")
    (by_role,), wall = idle_cpu(window, proj)
    res["idle_cpu_percent"].append(100 * sum(by_role.values()) / wall)
    res["idle_cpu_watchdog_percent"].append(100 * by_role.get("watchdog", 0) / wall)
    res["idle_cpu_supervisord_percent"].append(100 * by_role.get("supervisord", 0) / wall)
    res["idle_cpu_agents_percent"].append(100 * by_role.get("agent", 0) / wall)
    log(f"idle {wall:.0f}s: watchdog {res['idle_cpu_watchdog_percent'][-1]:.2f}%, supervisord "
        f"{res['idle_cpu_supervisord_percent'][-1]:.2f}%, agents "
        f"{res['idle_cpu_agents_percent'][-1]:.2f}% of a core")
    rss = 0
    for p in agents_of(proj):
        with contextlib.suppress(psutil.Error):
            rss += p.memory_info().rss
    res["agents_rss_total_mb"].append(rss / 2**20)
    with contextlib.suppress(psutil.Error):
        res["supervisord_fds"].append(psutil.Process(proj.supervisord_pid()).num_fds())


def measure_status(res: dict, proj: Project, runs: int) -> None:
    """XML-RPC status calls, then the status commands."""
    rpc = proj.rpc()
    for _ in range(5):
        c0 = time.perf_counter()
        rpc.supervisor.getAllProcessInfo()
        res["rpc_getAllProcessInfo_s"].append(time.perf_counter() - c0)
        c0 = time.perf_counter()
        rpc.coffee.getTeamStatus()
        res["rpc_getTeamStatus_s"].append(time.perf_counter() - c0)
    ct, sc = time_commands(proj, runs)
    res["status_s"] += ct
    res["supervisorctl_s"] += sc


def measure_broadcast(res: dict, proj: Project, run: int) -> None:
    """A send_all drained (completed) by every agent; the database polled every 10 ms."""
    db = task_status_db(proj.team.database_url)
    try:
        with MessageQueue.from_team(proj.team) as q:
            b0 = time.perf_counter()
            ids = q.send_all("bench", "bench_broadcast", {"run": run})
        marks = ",".join("?" * len(ids))
        query = f"SELECT COUNT(*) FROM tasks WHERE id IN ({marks}) AND status = 'completed'"
        wait_until(lambda: db.execute(query, ids).fetchone()[0] == len(ids), 120, 0.01,
                   "every agent to complete the broadcast")
        res["broadcast_drain_s"].append(time.perf_counter() - b0)
    finally:
        db.close()


def crash_victims(n: int) -> int:
    """How many agents are kill -9'd at once: a tenth of the team, at least 10."""
    return min(n, max(10, n // 10))


def measure_crash(res: dict, proj: Project, names: list[str], n: int) -> list[str]:
    """A tenth of the team kill -9'd at once, each holding a task: restarted by the watchdog
    through the backoff (how late against its due time), and every held task requeued and
    done by the new instance. Returns what went wrong."""
    count = crash_victims(n)
    victims = names[5::max(1, n // count)][:count]
    last_event = last_event_id(proj)
    infos = proj.infos()
    for name in victims:  # frozen first, so the task below is held by the agent, not run
        os.kill(infos[name]["pid"], signal.SIGSTOP)
    with MessageQueue.from_team(proj.team) as q:
        held = {}
        for name in victims:
            task_id = q.send("bench", name, "bench_held", {})
            held[name] = [t.id for t in q.claim(name)]
            assert held[name] == [task_id], f"{name} holds {held[name]}, not [{task_id}]"
    for name in victims:
        os.kill(infos[name]["pid"], signal.SIGKILL)
    k0 = time.perf_counter()
    with contextlib.suppress(WaitTimeout):  # counted below: fewer restarted
        wait_until(lambda: restarted(events(proj, "restarted", last_event), victims)
                   == set(victims), 60, 0.1, "every victim restarted")
    problems = []
    try:
        res["crash_all_running_s"].append(wait_running(proj, victims, timeout=30) - k0)
    except WaitTimeout as exc:
        problems.append(f"crash of {count}: {exc}")
    ids = [i for tasks in held.values() for i in tasks]
    db = task_status_db(proj.team.database_url)
    try:
        marks = ",".join("?" * len(ids))
        query = f"SELECT COUNT(*) FROM tasks WHERE id IN ({marks}) AND status = 'completed'"
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: db.execute(query, ids).fetchone()[0] == len(ids), 60, 0.05,
                       "every held task done by the restarted agents")
            res["crash_tasks_done_s"].append(time.perf_counter() - k0)
    finally:
        db.close()
    evs = events(proj, since_id=last_event)
    res["crash_restarted"].append(len(restarted(evs, victims)))
    requeued = {e["agent"] for e in evs if e["kind"] == "requeued" and e["agent"] in victims}
    res["crash_tasks_requeued"].append(len(requeued))
    if len(requeued) < count:
        problems.append(f"crash of {count}: tasks of {sorted(set(victims) - requeued)} "
                        f"not requeued")
    due = {e["agent"]: e["detail"]["due_at"] for e in evs if e["kind"] == "restart_scheduled"}
    res["crash_lateness_s"] += [e["ts"] - due[e["agent"]] for e in evs
                                if e["kind"] == "restarted" and e["agent"] in due]
    return problems


def restarted(evs: list[dict], victims: list[str]) -> set[str]:
    return {e["agent"] for e in evs if e["kind"] == "restarted" and e["agent"] in victims}


def supervisord_log_findings(proj: Project) -> dict:
    logs = proj.root / "data" / "logs"
    all_logs = list(logs.glob("*.log*"))
    return {
        "buffer_overflow_lines": grep_count([logs / "supervisord.log"], "buffer overflow"),
        "database_locked_lines": grep_count(all_logs, "database is locked"),
        "database_unavailable_lines": grep_count(all_logs, "database unavailable"),
        "watchdog_error_lines": grep_count([logs / "watchdog.log"], r"error in |failed"),
        "launch_window_missed_lines": grep_count([logs / "watchdog.log"], "not RUNNING after"),
        "too_many_open_files_lines": grep_count(all_logs, "Too many open files"),
    }


def shutdown_rate(proj: Project, window: float) -> float:
    """Agents stopped per second during the first ``window`` s of supervisor.shutdown().

    supervisord stops one program group per main-loop pass and a pass ends on its 1 s poll
    timeout, so a 100-agent shutdown takes ~100 s; timing the whole of it three times would
    dominate the run. The rest is stopped by SIGTERM afterwards (a fast shutdown)."""
    agents = agents_of(proj)
    t0 = time.perf_counter()
    proj.rpc().supervisor.shutdown()
    while True:
        alive = sum(still_running(p) for p in agents)
        elapsed = time.perf_counter() - t0
        if alive == 0 or elapsed >= window:
            break
        time.sleep(0.1)
    log(f"shutdown: {len(agents) - alive}/{len(agents)} agents stopped in {elapsed:.1f}s")
    return (len(agents) - alive) / elapsed


def still_running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
