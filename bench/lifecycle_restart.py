"""Crash recovery: crash -> restart lateness (``restart``), kill -9 of a busy agent -> its
task pending again (``requeue``)."""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import os
import re
import signal
import time

from coffee_team.queue import MessageQueue
from lifecycle_common import (RESTART_SETTINGS, bench_project, events, last_event_id, log,
                              summary, task_status_db, wait_running)
from tests.harness import Project, boot_supervisord, wait_until

CRASHERS = [f"crasher{i}" for i in range(3)]
WORKERS = [f"worker{i}" for i in range(3)]


# --- crash -> restart lateness -----------------------------------------------------------------

def bench_restart(repeat: int, quick: bool) -> dict:
    got = {"lateness": [], "late_by": [], "exit_to_watchdog": [],
           "delays": {1: [], 2: [], 4: []}, "from_exit": {}}
    for r in range(repeat):
        with bench_project() as proj:
            run_crashers_until_given_up(proj)
            evs, exits = events(proj), supervisord_exits(proj)
            for name in CRASHERS:
                mine = [e for e in evs if e["agent"] == name]
                measure_from_exits(got, mine, exits.get(name, []))
                measure_from_schedule(got, mine)
            log(f"restart run {r + 1}/{repeat}: lateness so far "
                f"{[round(x, 3) for x in got['lateness'][-9:]]}")
    return {"lateness_s": summary(got["lateness"]), "late_by_reported_s": summary(got["late_by"]),
            "delays_vs_schedule": {str(k): summary(v) for k, v in sorted(got["delays"].items())},
            "delays_from_exit_vs_schedule": {str(k): summary(v)
                                             for k, v in sorted(got["from_exit"].items())},
            "exit_to_watchdog_s": summary(got["exit_to_watchdog"]),
            "restart_backoff": 1.0, "crashing_agents": len(CRASHERS), "runs": repeat,
            "target_s": 1.0}


def run_crashers_until_given_up(proj: Project) -> None:
    agents = {n: {"priority": 1, "check_interval": 3600, "handler": "coffee_team.agent.faults:crash",
                  "options": {"crash_after": 1.5}} for n in CRASHERS}
    proj.write_team(agents, start_seconds=1, start_retries=2, **RESTART_SETTINGS)
    boot_supervisord(proj)
    wait_until(lambda: len({e["agent"] for e in events(proj, "given_up")}) == len(CRASHERS),
               90, 0.25, "the crashers to be given up")


def measure_from_exits(got: dict, mine: list[dict], exits: list[float]) -> None:
    """Against the moment supervisord reaped each crash: when the watchdog saw it, and when
    the agent was restarted (by the restart's backoff step)."""
    restarted = [e for e in mine if e["kind"] == "restarted"]
    for rs, died in zip(restarted, exits):
        seen = next(e["ts"] for e in mine if e["kind"] == "crash" and e["ts"] >= died)
        got["exit_to_watchdog"].append(seen - died)
        step = 2 ** (rs["detail"].get("attempt", 1) - 1)
        got["from_exit"].setdefault(step, []).append(rs["ts"] - died)


def measure_from_schedule(got: dict, mine: list[dict]) -> None:
    """Against the watchdog's own crash events: restart lateness vs the due time, and the
    crash -> restarted delay by scheduled delay."""
    crashes = [e for e in mine if e["kind"] == "crash"]
    scheduled = [e for e in mine if e["kind"] == "restart_scheduled"]
    restarted = [e for e in mine if e["kind"] == "restarted"]
    for s, rs, c in zip(scheduled, restarted, crashes):
        got["lateness"].append(rs["ts"] - s["detail"]["due_at"])
        got["late_by"].append(rs["detail"].get("late_by", 0.0))
        got["delays"].setdefault(int(round(s["detail"]["delay"])), []).append(rs["ts"] - c["ts"])


def supervisord_exits(proj: Project) -> dict[str, list[float]]:
    """{program: [epoch of each 'exited:' line in supervisord.log]} (when it was reaped)."""
    rx = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ exited: (\S+) ")
    out: dict[str, list[float]] = {}
    try:
        lines = (proj.root / "data" / "logs" / "supervisord.log").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        m = rx.match(line)
        if m:
            ts = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
            out.setdefault(m.group(3), []).append(ts)
    return out


# --- kill -9 of a busy agent -> task claimable again ---------------------------------------------

def bench_requeue(repeat: int, quick: bool) -> dict:
    samples, via_watchdog = [], 0
    for r in range(repeat):
        with bench_project() as proj:
            agents = {n: {"priority": 1, "check_interval": 3600,
                          "handler": "coffee_team.agent.faults:record",
                          "options": {"record_file": str(proj.root / "done.txt"),
                                      "work_seconds": 30}}
                      for n in WORKERS}
            proj.write_team(agents, **RESTART_SETTINGS)
            boot_supervisord(proj)
            wait_running(proj, WORKERS)
            db = task_status_db(proj.team.database_url)
            try:
                for name in WORKERS:
                    took, requeued = kill_busy_agent(proj, db, name, r)
                    samples.append(took)
                    via_watchdog += requeued
            finally:
                db.close()
            log(f"requeue run {r + 1}/{repeat}: {[round(x, 3) for x in samples[-3:]]}")
    return {"pending_again_s": summary(samples), "requeued_by_watchdog": via_watchdog,
            "kills": len(samples), "poll_interval_s": 0.005, "runs": repeat, "target_s": 2.0}


def kill_busy_agent(proj: Project, db, name: str, run: int) -> tuple[float, bool]:
    """kill -9 of ``name`` while it works on a fresh task: seconds until that task is pending
    again (the database polled every 5 ms), and whether the watchdog was the one to requeue it."""
    with MessageQueue.from_team(proj.team) as q:
        task_id = q.send("bench", name, "implement_priority", {"n": run})

    def status() -> str:
        return db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]

    wait_until(lambda: status() == "in_progress", 10, 0.005, f"{name} to claim task {task_id}")
    last_event = last_event_id(proj)
    os.kill(proj.infos()[name]["pid"], signal.SIGKILL)
    killed = time.perf_counter()
    wait_until(lambda: status() == "pending", 15, 0.005,
               f"task {task_id} to be pending again after kill -9")
    took = time.perf_counter() - killed
    requeued = any(e["kind"] == "requeued" and e["agent"] == name
                   for e in events(proj, since_id=last_event))
    wait_running(proj, [name], timeout=30)  # the restarted agent back before the next kill
    return took, requeued
