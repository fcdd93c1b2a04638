"""Lifecycle benchmarks of coffee-team under a real supervisord, each against a plain baseline.

    python bench/lifecycle_bench.py [--quick] [--only NAME ...] [--json bench/results/lifecycle.json]

Scenarios (each runnable alone with --only):
  restart    crash -> restart lateness vs the due time (restart_backoff 1), delays vs 1x/2x/4x
  requeue    kill -9 of an agent holding a task -> task pending again (DB polled every 5 ms)
  idle_cpu   CPU of the idle demo team + watchdog vs supervisord with 6 `sleep infinity`
  status     `coffee-team status` wall time vs `supervisorctl status` on the same team
  scale      100 agents: staggered boot vs plain unstaggered supervisord, status, broadcast
             drain, 10 simultaneous crashes, idle CPU, fds, and what breaks first
  rss        RSS per idle agent vs a bare `python -c "import time; time.sleep(1e9)"`
  consumers  queue throughput with 1/2/4/8 consumer processes (claim + mark_completed)

Every figure is repeated (>= 3 runs; --quick: 2 and shorter windows) and reported as
min/median/max with the raw samples. Each boot lives in a fresh /tmp project and is always
shut down and killed (try/finally), together with every process it started.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coffee_team import client, confgen, layout  # noqa: E402
from coffee_team.queue import MessageQueue  # noqa: E402
from coffee_team.team import load_team  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent
CTX = multiprocessing.get_context("spawn")
DEMO = [("architect", 1), ("code_developer", 2), ("project_manager", 3), ("assistant", 3),
        ("code_searcher", 4), ("ux_design_expert", 4)]
IDLE = 86400  # check_interval that keeps agents idle after their first periodic run


def summary(values) -> dict:
    values = [float(v) for v in values]
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None, "samples": []}
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values), "samples": [round(v, 6) for v in values]}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}


# --- a throwaway project under a real supervisord ----------------------------------------------

class Project:
    """A project root in a short /tmp path (unix socket paths are limited to 107 bytes)."""

    def __init__(self, prefix: str = "cb-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.team_file = self.root / "data" / "team.yaml"
        self.team = None
        self.conf = self.root / "supervisord.conf.d" / "supervisord.conf"
        self.sock = self.root / "data" / "run" / "supervisor.sock"
        self.pidfile = self.root / "data" / "run" / "supervisord.pid"
        self.known: dict[tuple[int, float], psutil.Process] = {}

    def write_team(self, agents: dict, **settings) -> None:
        self.team_file.parent.mkdir(parents=True, exist_ok=True)
        doc = {"team": {"python": PY, **settings}, "agents": agents}
        self.team_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.team = load_team(self.team_file)
        layout.ensure_data_dirs(self.team)
        layout.write_config(self.team)

    def write_plain(self, programs: dict[str, str], extra: str = "") -> None:
        """A hand-written plain supervisord config: no watchdog, no coffee rpcinterface."""
        run = self.root / "data" / "run"
        logs = self.root / "data" / "logs"
        run.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        text = (f"[unix_http_server]\nfile={self.sock}\nchmod=0700\n\n"
                f"[supervisord]\nlogfile={logs}/supervisord.log\npidfile={self.pidfile}\n"
                f"childlogdir={logs}\nminfds=1024\n\n"
                "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory="
                "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl=unix://{self.sock}\n\n")
        for name, command in programs.items():
            text += (f"[program:{name}]\ncommand={command}\nautostart=true\nautorestart=false\n"
                     f"startsecs=1\nredirect_stderr=true\nstdout_logfile={logs}/{name}.log\n"
                     f"{extra}\n")
        self.conf.write_text(text)

    def rpc(self, timeout: float = 30):
        return client.Endpoint("unix://" + str(self.sock)).proxy(timeout=timeout)

    def boot(self) -> float:
        """Start supervisord (it daemonizes); returns the perf_counter just before."""
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "supervisord"), "-c", str(self.conf)], check=True,
                       env=clean_env(), stdin=subprocess.DEVNULL, timeout=30, cwd=self.root)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.rpc(5).supervisor.getState()["statename"] == "RUNNING":
                    break
            except Exception:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"supervisord in {self.root} did not answer")
        self.remember()
        return t0

    def supervisord_pid(self) -> int:
        return int(self.pidfile.read_text())

    def tree(self) -> list[psutil.Process]:
        """supervisord and all its descendants, now."""
        try:
            sup = psutil.Process(self.supervisord_pid())
            return [sup] + sup.children(recursive=True)
        except (psutil.Error, OSError, ValueError):
            return []

    def remember(self) -> None:
        for p in self.tree():
            try:
                self.known[(p.pid, p.create_time())] = p
            except psutil.Error:
                pass

    def infos(self) -> dict[str, dict]:
        return {i["name"]: i for i in self.rpc().supervisor.getAllProcessInfo()}

    def wait_all(self, names, state: str = "RUNNING", timeout: float = 60,
                 interval: float = 0.1) -> float:
        """Wait until every name is in ``state``; returns the perf_counter when seen."""
        deadline = time.monotonic() + timeout
        while True:
            infos = self.infos()
            now = time.perf_counter()
            if all(infos.get(n, {}).get("statename") == state for n in names):
                self.remember()
                return now
            if time.monotonic() > deadline:
                bad = {n: infos.get(n, {}).get("statename") for n in names
                       if infos.get(n, {}).get("statename") != state}
                raise RuntimeError(f"timed out waiting for {state}: {dict(list(bad.items())[:10])}")
            time.sleep(interval)

    def queue(self) -> MessageQueue:
        return MessageQueue.from_team(self.team)

    def events(self, kind: str | None = None, since_id: int = 0) -> list[dict]:
        with self.queue() as q:
            rows, last = [], since_id
            while True:
                batch = q.events(since_id=last, limit=1000)
                rows += batch
                if len(batch) < 1000:
                    break
                last = batch[-1]["id"]
        return [e for e in rows if kind is None or e["kind"] == kind]

    def shutdown(self, fast: bool = False) -> float:
        """Stop supervisord, kill whatever is left, delete the project. Returns seconds taken.

        fast: SIGTERM every child at once instead of waiting for supervisord's one-group-
        per-second stop order (used at scale, after the graceful part has been timed)."""
        t0 = time.perf_counter()
        self.remember()
        try:
            pid = self.supervisord_pid()
            try:
                self.rpc(30).supervisor.shutdown()
            except Exception:
                pass  # already shutting down
            if fast:
                for p in self.tree()[1:]:
                    try:
                        p.terminate()
                    except psutil.Error:
                        pass
            try:
                psutil.Process(pid).wait(20 if fast else 60)
            except psutil.Error:
                pass
        except Exception:
            pass
        took = time.perf_counter() - t0
        leftovers = []
        for (pid, created), proc in self.known.items():
            try:
                if proc.is_running() and proc.create_time() == created:
                    leftovers.append(proc)
            except psutil.Error:
                pass
        marker = str(self.root)
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if marker in " ".join(proc.info["cmdline"] or []) and proc not in leftovers:
                    leftovers.append(proc)
            except psutil.Error:
                pass
        for proc in leftovers:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(leftovers, timeout=5)
        if leftovers:
            log(f"killed {len(leftovers)} leftover process(es) of {self.root}")
        shutil.rmtree(self.root, ignore_errors=True)
        return took


def demo_agents(check_interval: float = IDLE, work_seconds: float = 0.01) -> dict:
    return {name: {"priority": prio, "check_interval": check_interval,
                   "handler": "coffee_team.demo:handle",
                   "options": {"work_seconds": work_seconds}}
            for name, prio in DEMO}


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


def role(p: psutil.Process) -> str:
    argv = p.cmdline()
    cmd = " ".join(argv)
    if any(os.path.basename(a) == "supervisord" for a in argv[:2]):
        return "supervisord"
    if "coffee_team.watchdog.listener" in cmd:
        return "watchdog"
    if "agent run" in cmd:
        return "agent"
    if "sleep" in cmd:
        return "sleep"
    return "other"


def cpu_delta(before, after) -> dict[str, float]:
    by_role: dict[str, float] = {}
    for key, (r, secs) in after.items():
        by_role[r] = by_role.get(r, 0.0) + secs - before.get(key, (r, 0.0))[1]
    return by_role


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


def task_status_db(db_path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None, timeout=5)
    return conn


# --- 1a. crash -> restart lateness ---------------------------------------------------------------

def bench_restart(repeat: int, quick: bool) -> dict:
    crashers = [f"crasher{i}" for i in range(3)]
    lateness, delays = [], {1: [], 2: [], 4: []}
    late_by_watchdog, seen_late, from_exit = [], [], {}
    for r in range(repeat):
        proj = Project()
        try:
            agents = {n: {"priority": 1, "check_interval": 3600,
                          "handler": "coffee_team.faults:crash",
                          "options": {"crash_after": 1.5}} for n in crashers}
            proj.write_team(agents, restart_backoff=1.0, max_restart_attempts=3,
                            restart_reset_after=60, start_seconds=1, start_retries=2,
                            stop_wait_seconds=5)
            proj.boot()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if len({e["agent"] for e in proj.events("given_up")}) == len(crashers):
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError("crashers did not give up in time")
            events = proj.events()
            exits = supervisord_exits(proj)
            for name in crashers:
                for rs, died in zip([e for e in events if e["agent"] == name
                                     and e["kind"] == "restarted"], exits.get(name, [])):
                    seen_late.append(
                        next(e["ts"] for e in events if e["agent"] == name
                             and e["kind"] == "crash" and e["ts"] >= died) - died)
                    attempt = rs["detail"].get("attempt", 1)
                    from_exit.setdefault(2 ** (attempt - 1), []).append(rs["ts"] - died)
                mine = [e for e in events if e["agent"] == name]
                crashes = [e for e in mine if e["kind"] == "crash"]
                sched = [e for e in mine if e["kind"] == "restart_scheduled"]
                restarted = [e for e in mine if e["kind"] == "restarted"]
                for s, rs, c in zip(sched, restarted, crashes):
                    lateness.append(rs["ts"] - s["detail"]["due_at"])
                    late_by_watchdog.append(rs["detail"].get("late_by", 0.0))
                    delay = s["detail"]["delay"]
                    delays.setdefault(int(round(delay)), []).append(rs["ts"] - c["ts"])
            log(f"restart run {r + 1}/{repeat}: lateness so far "
                f"{[round(x, 3) for x in lateness[-9:]]}")
        finally:
            proj.shutdown()
    return {"lateness_s": summary(lateness), "late_by_reported_s": summary(late_by_watchdog),
            "delays_vs_schedule": {str(k): summary(v) for k, v in sorted(delays.items())},
            "delays_from_exit_vs_schedule": {str(k): summary(v) for k, v in sorted(from_exit.items())},
            "exit_to_watchdog_s": summary(seen_late),
            "restart_backoff": 1.0, "crashing_agents": len(crashers), "runs": repeat,
            "target_s": 1.0}


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


# --- 1b. kill -9 of a busy agent -> task claimable again ----------------------------------------

def bench_requeue(repeat: int, quick: bool) -> dict:
    workers = [f"worker{i}" for i in range(3)]
    samples, via_watchdog = [], 0
    for r in range(repeat):
        proj = Project()
        try:
            record = proj.root / "done.txt"
            agents = {n: {"priority": 1, "check_interval": 3600,
                          "handler": "coffee_team.faults:record",
                          "options": {"record_file": str(record), "work_seconds": 30}}
                      for n in workers}
            proj.write_team(agents, restart_backoff=1.0, max_restart_attempts=3,
                            restart_reset_after=60, stop_wait_seconds=5)
            proj.boot()
            proj.wait_all(workers)
            db = task_status_db(proj.team.database_url)
            try:
                for name in workers:
                    with proj.queue() as q:
                        task_id = q.send("bench", name, "implement_priority", {"n": r})
                    status = lambda: db.execute("SELECT status FROM tasks WHERE id = ?",
                                                (task_id,)).fetchone()[0]
                    deadline = time.monotonic() + 10
                    while status() != "in_progress":
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name} did not claim task {task_id}")
                        time.sleep(0.005)
                    last_event = max([e["id"] for e in proj.events()] or [0])
                    pid = proj.infos()[name]["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed = time.perf_counter()
                    deadline = time.monotonic() + 15
                    while True:
                        s = status()
                        if s == "pending":
                            took = time.perf_counter() - killed
                            break
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"task {task_id} still {s} 15 s after kill -9")
                        time.sleep(0.005)
                    samples.append(took)
                    if any(e["kind"] == "requeued" and e["agent"] == name
                           for e in proj.events(since_id=last_event)):
                        via_watchdog += 1
                    # let the restarted agent come back before the next kill
                    proj.wait_all([name], timeout=30)
            finally:
                db.close()
            log(f"requeue run {r + 1}/{repeat}: {[round(x, 3) for x in samples[-3:]]}")
        finally:
            proj.shutdown()
    return {"pending_again_s": summary(samples), "requeued_by_watchdog": via_watchdog,
            "kills": len(samples), "poll_interval_s": 0.005, "runs": repeat, "target_s": 2.0}


# --- 2. idle CPU ---------------------------------------------------------------------------------

def bench_idle_cpu(repeat: int, quick: bool, window: float | None = None) -> dict:
    window = window or (15.0 if quick else 60.0)
    settle = 5.0 if quick else 10.0
    team_pct, base_pct, over, roles = [], [], [], []
    for r in range(repeat):
        team, base = Project(), Project("cbb-")
        try:
            team.write_team(demo_agents())  # defaults: heartbeat 30 s, health check 30 s
            base.write_plain({f"sleeper{i}": "sleep infinity" for i in range(6)})
            team.boot()
            base.boot()
            team.wait_all(team.team.names)
            base.wait_all([f"sleeper{i}" for i in range(6)])
            time.sleep(settle)
            b_team, b_base = tree_cpu(team.tree()), tree_cpu(base.tree())
            t0 = time.perf_counter()
            time.sleep(window)
            a_team, a_base = tree_cpu(team.tree()), tree_cpu(base.tree())
            wall = time.perf_counter() - t0
            d_team, d_base = cpu_delta(b_team, a_team), cpu_delta(b_base, a_base)
            tp = 100 * sum(d_team.values()) / wall
            bp = 100 * sum(d_base.values()) / wall
            team_pct.append(tp)
            base_pct.append(bp)
            over.append(tp - bp)
            roles.append({k: round(100 * v / wall, 3) for k, v in d_team.items()})
            log(f"idle_cpu run {r + 1}/{repeat}: team {tp:.3f}% baseline {bp:.3f}% "
                f"({roles[-1]})")
        finally:
            team.shutdown()
            base.shutdown()
    return {"team_percent_of_core": summary(team_pct), "baseline_percent_of_core": summary(base_pct),
            "over_baseline_percent": summary(over), "by_role_percent": roles,
            "window_s": window, "runs": repeat, "target_over_baseline_percent": 1.0}


# --- 3. status wall time ---------------------------------------------------------------------------

def time_commands(proj: Project, runs: int) -> tuple[list[float], list[float]]:
    ct = [str(BIN / "coffee-team"), "--team", str(proj.team_file), "status"]
    sc = [str(BIN / "supervisorctl"), "-c", str(proj.conf), "status"]
    out = {"ct": [], "sc": []}

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
    for _ in range(runs):  # interleaved so drift hits both alike
        out["ct"].append(once(ct))
        out["sc"].append(once(sc))
    return out["ct"], out["sc"]


def bench_status(repeat: int, quick: bool) -> dict:
    runs = max(10, 5 * repeat) if not quick else 10
    proj = Project()
    try:
        proj.write_team(demo_agents())
        proj.boot()
        proj.wait_all(proj.team.names)
        time.sleep(2)
        ct, sc = time_commands(proj, runs)
    finally:
        proj.shutdown()
    ratio = statistics.median(ct) / statistics.median(sc)
    log(f"status: coffee-team {statistics.median(ct):.3f}s supervisorctl "
        f"{statistics.median(sc):.3f}s ratio {ratio:.2f}")
    return {"coffee_team_status_s": summary(ct), "supervisorctl_status_s": summary(sc),
            "ratio_of_medians": ratio, "runs": runs, "agents": 6, "target_ratio": 1.5}


# --- 4. 100 agents -------------------------------------------------------------------------------

def scale_agents(n: int, groups: int = 10) -> dict:
    per = max(1, n // groups)
    return {f"a{i:03d}": {"priority": min(i // per, groups - 1), "check_interval": IDLE,
                          "handler": "coffee_team.demo:handle",
                          "options": {"work_seconds": 0.01}} for i in range(n)}


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


SHUTDOWN_WINDOW = 10.0  # seconds of a graceful supervisord shutdown to time at scale


def shutdown_rate(proj: Project, window: float) -> float:
    """Agents stopped per second during the first ``window`` s of supervisor.shutdown().

    supervisord stops one program group per main-loop pass and a pass ends on its 1 s poll
    timeout, so a 100-agent shutdown takes ~100 s; timing the whole of it three times would
    dominate the run. The rest is stopped by SIGTERM from here (fast=True shutdown)."""
    agents = [p for p in proj.tree() if role(p) == "agent"]
    t0 = time.perf_counter()
    proj.rpc().supervisor.shutdown()
    while True:
        alive = 0
        for p in agents:
            try:
                alive += p.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                pass
        elapsed = time.perf_counter() - t0
        if alive == 0 or elapsed >= window:
            break
        time.sleep(0.1)
    stopped = len(agents) - alive
    log(f"shutdown: {stopped}/{len(agents)} agents stopped in {elapsed:.1f}s")
    return stopped / elapsed


def bench_scale(repeat: int, quick: bool, n: int = 100) -> dict:
    res = {k: [] for k in ("boot_s", "baseline_boot_s", "status_s", "supervisorctl_s",
                           "rpc_getAllProcessInfo_s", "rpc_getTeamStatus_s", "broadcast_drain_s", "crash10_restarted",
                           "crash10_all_running_s", "crash10_lateness_s", "idle_cpu_percent",
                           "idle_cpu_watchdog_percent", "idle_cpu_supervisord_percent",
                           "idle_cpu_agents_percent", "supervisord_fds", "agents_rss_total_mb",
                           "shutdown_agents_per_s", "baseline_shutdown_agents_per_s")}
    findings = []
    idle_window = 10.0 if quick else 20.0
    status_runs = 3 if quick else 5
    for r in range(repeat):
        proj = Project()
        names = []
        try:
            proj.write_team(scale_agents(n), restart_backoff=1.0, max_restart_attempts=3,
                            restart_reset_after=60, start_seconds=1, stop_wait_seconds=5)
            names = list(proj.team.names)
            t0 = proj.boot()
            t_all = proj.wait_all(names, timeout=180, interval=0.2)
            res["boot_s"].append(t_all - t0)
            log(f"scale run {r + 1}/{repeat}: {n} agents RUNNING in {t_all - t0:.2f}s (staggered)")
            # the watchdog is blocked in the launch while supervisord buffers every agent's
            # PROCESS_STATE events; let it work through that backlog before measuring idle
            time.sleep(10)
            # idle CPU of the whole tree
            before = tree_cpu(proj.tree())
            w0 = time.perf_counter()
            time.sleep(idle_window)
            d = cpu_delta(before, tree_cpu(proj.tree()))
            wall = time.perf_counter() - w0
            res["idle_cpu_percent"].append(100 * sum(d.values()) / wall)
            res["idle_cpu_watchdog_percent"].append(100 * d.get("watchdog", 0) / wall)
            res["idle_cpu_supervisord_percent"].append(100 * d.get("supervisord", 0) / wall)
            res["idle_cpu_agents_percent"].append(100 * d.get("agent", 0) / wall)
            rss = 0
            for p in proj.tree():
                try:
                    if role(p) == "agent":
                        rss += p.memory_info().rss
                except psutil.Error:
                    pass
            res["agents_rss_total_mb"].append(rss / 2**20)
            try:
                res["supervisord_fds"].append(psutil.Process(proj.supervisord_pid()).num_fds())
            except psutil.Error:
                pass
            # XML-RPC and CLI status
            rpc = proj.rpc()
            for _ in range(5):
                c0 = time.perf_counter()
                rpc.supervisor.getAllProcessInfo()
                res["rpc_getAllProcessInfo_s"].append(time.perf_counter() - c0)
                c0 = time.perf_counter()
                rpc.coffee.getTeamStatus()
                res["rpc_getTeamStatus_s"].append(time.perf_counter() - c0)
            ct, sc = time_commands(proj, status_runs)
            res["status_s"] += ct
            res["supervisorctl_s"] += sc
            # broadcast drained by every agent
            db = task_status_db(proj.team.database_url)
            try:
                with proj.queue() as q:
                    b0 = time.perf_counter()
                    ids = q.send_all("bench", "bench_broadcast", {"run": r})
                marks = ",".join("?" * len(ids))
                deadline = time.monotonic() + 120
                while True:
                    done = db.execute(f"SELECT COUNT(*) FROM tasks WHERE id IN ({marks})"
                                      " AND status = 'completed'", ids).fetchone()[0]
                    if done == len(ids):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"broadcast: {done}/{len(ids)} completed after 120 s")
                    time.sleep(0.01)
                res["broadcast_drain_s"].append(time.perf_counter() - b0)
            finally:
                db.close()
            # 10 agents killed at once
            victims = names[5::max(1, n // 10)][:10]
            last_event = max([e["id"] for e in proj.events()] or [0])
            infos = proj.infos()
            for name in victims:
                os.kill(infos[name]["pid"], signal.SIGKILL)
            k0 = time.perf_counter()
            deadline = time.monotonic() + 60
            while True:
                restarted = {e["agent"] for e in proj.events("restarted", since_id=last_event)
                             if e["agent"] in victims}
                if len(restarted) == len(victims) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            try:
                k1 = proj.wait_all(victims, timeout=30)
                res["crash10_all_running_s"].append(k1 - k0)
            except RuntimeError as exc:
                findings.append(f"run {r + 1}: crash of 10: {exc}")
            evs = proj.events(since_id=last_event)
            res["crash10_restarted"].append(len({e["agent"] for e in evs
                                                 if e["kind"] == "restarted"
                                                 and e["agent"] in victims}))
            sched = {e["agent"]: e["detail"]["due_at"] for e in evs
                     if e["kind"] == "restart_scheduled"}
            res["crash10_lateness_s"] += [e["ts"] - sched[e["agent"]] for e in evs
                                          if e["kind"] == "restarted" and e["agent"] in sched]
            log(f"scale run {r + 1}/{repeat}: broadcast {res['broadcast_drain_s'][-1]:.2f}s, "
                f"crash10 restarted {res['crash10_restarted'][-1]}/10, idle CPU "
                f"{res['idle_cpu_percent'][-1]:.2f}%")
            found = supervisord_log_findings(proj)
            found["run"] = r + 1
            findings.append(found)
            res["shutdown_agents_per_s"].append(shutdown_rate(proj, SHUTDOWN_WINDOW))
        finally:
            proj.shutdown(fast=True)
        # baseline: plain supervisord, the same 100 commands, autostart=true, no stagger
        base = Project("cbb-")
        try:
            base.write_team(scale_agents(n), stop_wait_seconds=5)
            programs = {}
            for spec in base.team.agents:
                section = confgen.agent_section(base.team, spec)
                command = next(line for line in section.splitlines()
                               if line.startswith("command="))[len("command="):]
                programs[spec.name] = command.replace("%(here)s", str(base.conf.parent))
            base.write_plain(programs, extra=f"directory={base.root}\nstopwaitsecs=5\n"
                                             "environment=PYTHONUNBUFFERED=\"1\"\n")
            t0 = base.boot()
            t_all = base.wait_all(list(programs), timeout=180, interval=0.2)
            res["baseline_boot_s"].append(t_all - t0)
            log(f"scale run {r + 1}/{repeat}: baseline {n} RUNNING in {t_all - t0:.2f}s")
            res["baseline_shutdown_agents_per_s"].append(shutdown_rate(base, SHUTDOWN_WINDOW))
        finally:
            base.shutdown(fast=True)
    out = {k: summary(v) for k, v in res.items()}
    out.update(agents=n, priority_groups=10, runs=repeat, findings=findings,
               boot_ratio=statistics.median(res["boot_s"]) / statistics.median(res["baseline_boot_s"]),
               status_ratio=statistics.median(res["status_s"]) / statistics.median(res["supervisorctl_s"]),
               target_boot_s=15.0,
               listener_buffer_size=confgen.listener_buffer_size(SimpleNamespace(agents=range(n))))
    return out


# --- 5. RSS per idle agent -----------------------------------------------------------------------

def bench_rss(repeat: int, quick: bool) -> dict:
    rss, uss, bare_rss, bare_uss = [], [], [], []
    for r in range(repeat):
        proj = Project()
        bare = []
        try:
            proj.write_team(demo_agents())
            proj.boot()
            proj.wait_all(proj.team.names)
            bare = [subprocess.Popen([PY, "-c", "import time; time.sleep(1e9)"],
                                     stdin=subprocess.DEVNULL) for _ in range(3)]
            time.sleep(3)
            for p in proj.tree():
                try:
                    if role(p) == "agent":
                        m = p.memory_full_info()
                        rss.append(m.rss / 2**20)
                        uss.append(m.uss / 2**20)
                except psutil.Error:
                    pass
            for b in bare:
                m = psutil.Process(b.pid).memory_full_info()
                bare_rss.append(m.rss / 2**20)
                bare_uss.append(m.uss / 2**20)
            log(f"rss run {r + 1}/{repeat}: agents {statistics.median(rss):.1f} MB, bare python "
                f"{statistics.median(bare_rss):.1f} MB")
        finally:
            for b in bare:
                b.kill()
                b.wait()
            proj.shutdown()
    return {"agent_rss_mb": summary(rss), "agent_uss_mb": summary(uss),
            "bare_python_rss_mb": summary(bare_rss), "bare_python_uss_mb": summary(bare_uss),
            "ratio_of_medians": statistics.median(rss) / statistics.median(bare_rss),
            "runs": repeat, "target_mb": 30.0}


# --- queue throughput vs consumers ----------------------------------------------------------------

def _consumer(path: str, ready, go, results) -> None:
    q = MessageQueue(path, max_queue_size=10**7)
    try:
        ready.release()
        go.wait()
        done = 0
        while True:
            tasks = q.claim("worker", 1)
            if not tasks:
                break
            q.mark_completed(tasks[0].id)
            done += 1
        results.put((done, time.time()))
    finally:
        q.close()


def bench_consumers(repeat: int, quick: bool) -> dict:
    n = 500 if quick else 2000
    out = {}
    for k in (1, 2, 4, 8):
        rates = []
        for r in range(repeat):
            tmp = tempfile.mkdtemp(prefix="cbq-", dir="/tmp")
            procs = []
            try:
                path = os.path.join(tmp, "q.db")
                with MessageQueue(path, max_queue_size=10**7) as q:
                    q.send_many([{"sender": "bench", "recipient": "worker", "type": "job",
                                  "content": {"i": i}} for i in range(n)])
                ready, go, results = CTX.Semaphore(0), CTX.Event(), CTX.Queue()
                procs = [CTX.Process(target=_consumer, args=(path, ready, go, results))
                         for _ in range(k)]
                for p in procs:
                    p.start()
                for _ in procs:
                    if not ready.acquire(timeout=60):
                        raise RuntimeError("consumer did not start")
                t0 = time.time()
                go.set()
                got = [results.get(timeout=300) for _ in procs]
                for p in procs:
                    p.join(30)
                total = sum(g[0] for g in got)
                if total != n:
                    raise RuntimeError(f"{k} consumers completed {total} of {n} tasks")
                with sqlite3.connect(path) as conn:
                    completed = conn.execute("SELECT COUNT(*) FROM tasks WHERE status = "
                                             "'completed'").fetchone()[0]
                if completed != n:
                    raise RuntimeError(f"{completed} of {n} tasks completed in the database")
                rates.append(n / (max(g[1] for g in got) - t0))
            finally:
                for p in procs:
                    if p.is_alive():
                        p.kill()
                        p.join()
                shutil.rmtree(tmp, ignore_errors=True)
        out[str(k)] = summary(rates)
        log(f"consumers {k}: median {statistics.median(rates):.0f} tasks/s")
    return {"tasks_per_second": out, "tasks": n, "runs": repeat,
            "what": "n prefilled tasks for one recipient drained by k processes "
                    "(claim(limit=1) + mark_completed each)"}


SCENARIOS = {"restart": bench_restart, "requeue": bench_requeue, "idle_cpu": bench_idle_cpu,
             "status": bench_status, "scale": bench_scale, "rss": bench_rss,
             "consumers": bench_consumers}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs, shorter windows")
    parser.add_argument("--repeat", type=int, default=None, help="runs per scenario (default 3)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS),
                        help="run only this scenario (repeatable)")
    parser.add_argument("--agents", type=int, default=100, help="team size for 'scale'")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "lifecycle.json"),
                        help="results file; scenarios not run keep their previous results")
    args = parser.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 3)
    results = {}
    if args.json and os.path.exists(args.json):
        try:
            results = json.load(open(args.json)).get("scenarios", {})
        except (OSError, ValueError):
            results = {}
    failed = []
    for name in args.only or list(SCENARIOS):
        log(f"== {name} ({repeat} runs{', quick' if args.quick else ''})")
        started = time.time()
        try:
            if name == "scale":
                data = bench_scale(repeat, args.quick, n=args.agents)
            else:
                data = SCENARIOS[name](repeat, args.quick)
        except Exception as exc:
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            data = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        data.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"), quick=args.quick,
                    seconds=round(time.time() - started, 1))
        results[name] = data
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            doc = {"python": sys.version.split()[0], "cores": os.cpu_count(),
                   "sqlite_version": sqlite3.sqlite_version, "scenarios": results}
            Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
