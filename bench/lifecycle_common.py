"""What the lifecycle scenarios share: a project under a real supervisord (tests/harness.py,
with the team's default timings), a plain-supervisord baseline, statistics, CPU by role.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

import psutil

from coffee_team import confgen
from coffee_team.queue import MessageQueue
from tests.harness import BIN, Project, clean_env, temporary_project

PY = sys.executable
IDLE = 86400  # check_interval that keeps agents idle after their first periodic run
# the team's own defaults (heartbeat and health check every 30 s): what a user runs, not the
# fast timings of the tests
BENCH_TEAM = {"python": PY}
RESTART_SETTINGS = {"restart_backoff": 1.0, "max_restart_attempts": 3,
                    "restart_reset_after": 60, "stop_wait_seconds": 5}


def summary(values) -> dict:
    values = [float(v) for v in values]
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None, "samples": []}
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values), "samples": [round(v, 6) for v in values]}


def create_database(proj: Project) -> None:
    """As `coffee-team start` does before it boots supervisord: agents never make a missing
    database (they wait for it), so a plain supervisord's agents need it made first."""
    MessageQueue.from_team(proj.team).close()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_project(prefix: str = "cb-", fast: bool = False):
    """A fresh /tmp project, shut down and deleted when the ``with`` block ends; ``fast`` as
    in ``shutdown_supervisord`` (a graceful stop at 6 agents may take its time)."""
    return temporary_project(prefix, BENCH_TEAM, fast=fast, wait=20 if fast else 60)


def compile_sources() -> None:
    """Byte-compile coffee_team, as a pip install does. With PYTHONDONTWRITEBYTECODE set (as
    on the bench machine) an editable install is otherwise compiled again by every process
    it starts: ~50 modules, about half of an agent's start-up CPU, in the team and in the
    baseline alike."""
    import compileall
    # not examples/: a project's files, copied by `coffee-team init`, never imported from here
    compileall.compile_dir(str(Path(confgen.__file__).parent), quiet=1,
                           rx=re.compile(r"/examples/"))


def write_plain_config(project: Project, programs: dict[str, str], extra: str = "") -> None:
    """A hand-written plain supervisord config: no watchdog, no coffee rpcinterface."""
    run = project.root / "data" / "run"
    logs = project.root / "data" / "logs"
    run.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    project.conf.parent.mkdir(parents=True, exist_ok=True)
    text = (f"[unix_http_server]\nfile={project.sock}\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={logs}/supervisord.log\npidfile={project.pidfile}\n"
            f"childlogdir={logs}\nminfds={confgen.min_fds(len(programs), listeners=0)}\n"
            f"minprocs={confgen.min_procs(len(programs))}\n\n"
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory="
            "supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{project.sock}\n\n")
    for name, command in programs.items():
        text += (f"[program:{name}]\ncommand={command}\nautostart=true\nautorestart=false\n"
                 f"startsecs=1\nredirect_stderr=true\nstdout_logfile={logs}/{name}.log\n"
                 f"{extra}\n")
    project.conf.write_text(text)


def wait_running(project: Project, names: Iterable[str], timeout: float = 60,
                 interval: float = 0.1) -> float:
    """Wait until every name is RUNNING; returns the perf_counter when that was seen."""
    project.wait_states("RUNNING", timeout, interval, names=names)
    seen = time.perf_counter()
    project.remember()  # the agents too, should they outlive supervisord
    return seen


def events(project: Project, kind: str | None = None, since_id: int = 0) -> list[dict]:
    with MessageQueue.from_team(project.team) as q:
        rows, last = [], since_id
        while True:
            batch = q.events(since_id=last, limit=1000)
            rows += batch
            if len(batch) < 1000:
                break
            last = batch[-1]["id"]
    return [e for e in rows if kind is None or e["kind"] == kind]


def last_event_id(project: Project) -> int:
    return max([e["id"] for e in events(project)] or [0])


def task_status_db(db_path: str) -> sqlite3.Connection:
    """A read-only connection, so that polling it never takes a write lock from the agents."""
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None, timeout=5)


# --- CPU and memory by role ------------------------------------------------------------------

def role(p: psutil.Process) -> str:
    argv = p.cmdline()
    cmd = " ".join(argv)
    if any(os.path.basename(a) == "supervisord" for a in argv[:2]):
        return "supervisord"
    if "-m coffee_team.watchdog" in cmd or "eventlisteners/watchdog.py" in cmd:
        return "watchdog"
    if "agent run" in cmd:
        return "agent"
    if "sleep" in cmd:
        return "sleep"
    return "other"


def tree_cpu(procs) -> dict[tuple[int, float], tuple[str, float]]:
    out = {}
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                out[(p.pid, p.create_time())] = (role(p), t.user + t.system)
        except psutil.Error:
            pass
    return out


def cpu_delta(before, after) -> dict[str, float]:
    by_role: dict[str, float] = {}
    for key, (r, secs) in after.items():
        by_role[r] = by_role.get(r, 0.0) + secs - before.get(key, (r, 0.0))[1]
    return by_role


def idle_cpu(window: float, *projects: Project) -> tuple[list[dict[str, float]], float]:
    """CPU seconds by role each project's tree used over ``window`` s, and the wall time."""
    before = [tree_cpu(p.tree()) for p in projects]
    started = time.perf_counter()
    time.sleep(window)
    after = [tree_cpu(p.tree()) for p in projects]
    wall = time.perf_counter() - started
    return [cpu_delta(b, a) for b, a in zip(before, after)], wall


def agents_of(project: Project) -> list[psutil.Process]:
    found = []
    for p in project.tree():
        try:
            if role(p) == "agent":
                found.append(p)
        except psutil.Error:
            pass
    return found


# --- status commands and logs ----------------------------------------------------------------

def time_commands(proj: Project, runs: int) -> tuple[list[float], list[float]]:
    """Wall times of ``coffee-team status`` and ``supervisorctl status``, interleaved so that
    drift hits both alike."""
    ct = [str(BIN / "coffee-team"), "--team", str(proj.team_file), "status"]
    sc = [str(BIN / "supervisorctl"), "-c", str(proj.conf), "status"]

    def once(cmd) -> float:
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(),
                             stdin=subprocess.DEVNULL, cwd=proj.root, timeout=120)
        took = time.perf_counter() - t0
        if res.returncode not in (0, 3) or "Traceback" in res.stderr:
            # supervisorctl status exits 3 when a program is not RUNNING
            raise RuntimeError(f"{cmd[0]} exited {res.returncode}: {res.stderr[-500:]}")
        return took

    once(ct), once(sc)  # warm the page cache; not counted
    pairs = [(once(ct), once(sc)) for _ in range(runs)]
    return [c for c, _ in pairs], [s for _, s in pairs]


def grep_count(paths, pattern: str) -> int:
    rx = re.compile(pattern)
    n = 0
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                n += sum(1 for line in f if rx.search(line))
        except OSError:
            pass
    return n
