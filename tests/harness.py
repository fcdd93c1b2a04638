"""A throwaway project under a real supervisord, shared by the tests and the benchmarks.

No pytest in here: ``bench/`` imports it as well. Every boot is meant to end in
``shutdown_supervisord`` (``temporary_project`` makes sure of it), which stops supervisord
gracefully and then kills whatever it left behind, so no run leaks processes into the next.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import psutil
import yaml

from coffee_team import client, layout
from coffee_team.team import Team, load_team

BIN = Path(sys.executable).parent
FAST_TEAM = {
    "health_check_interval": 1,
    "max_restart_attempts": 3,
    "restart_backoff": 1.0,
    "restart_reset_after": 30,
    "heartbeat_interval": 1,
    "heartbeat_stale_after": 3,
    "start_seconds": 1,
    "start_retries": 2,
    "stop_wait_seconds": 5,
    "python": sys.executable,
}
DEMO_AGENTS = [("architect", 1, 3600), ("code_developer", 2, 300), ("project_manager", 3, 900),
               ("assistant", 3, 1800), ("code_searcher", 4, 86400), ("ux_design_expert", 4, 3600)]

log = logging.getLogger(__name__)
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A wait ran out of time; an AssertionError so that pytest reports a plain failure."""


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05,
               message: str = "condition") -> T:
    """The first truthy value of ``predicate()``, polled every ``interval`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise WaitTimeout(f"timed out after {timeout}s waiting for {message}")


class Lines:
    """A process's output read line by line on a thread, so that a test waits for what it
    printed (``wait_until``), not for a fixed time that a loaded machine may outlast before
    the process even printed its first line."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def rest(self, timeout: float = 10) -> str:
        """Everything, once the stream ended (the process exited)."""
        self._reader.join(timeout)
        return self.text()


def demo_agents(work_seconds: float = 0.01, check_interval: float | None = None) -> dict:
    """The six demo agents; ``check_interval``, when given, replaces each one's own."""
    return {name: {"priority": prio, "check_interval": check_interval or interval,
                   "handler": "coffee_team.agent.demo:handle",
                   "options": {"work_seconds": work_seconds}}
            for name, prio, interval in DEMO_AGENTS}


def clean_env(extra: dict | None = None) -> dict:
    """os.environ without SUPERVISOR_*: a run started under some supervisord must not
    talk to that one instead of the project's."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    environ.update(extra or {})
    return environ


class Project:
    """A project root: its team file, generated config, and every process started from it."""

    def __init__(self, root: Path, team_defaults: dict = FAST_TEAM):
        self.root = Path(root)
        self.team_defaults = team_defaults
        self.team_file = self.root / "data" / "team.yaml"
        self.conf = self.root / "supervisord.conf.d" / "supervisord.conf"
        self.sock = self.root / "data" / "run" / "supervisor.sock"
        self.pidfile = self.root / "data" / "run" / "supervisord.pid"
        self._team: Team | None = None
        # (pid, create_time) of everything seen under supervisord: a process that outlives a
        # dead supervisord is reparented and no longer found by walking its tree
        self._seen: dict[tuple[int, float], psutil.Process] = {}

    def write_team(self, agents: dict | None = None, **settings) -> None:
        """team.yaml (``team_defaults`` overridden by ``settings``) and the config from it."""
        self.team_file.parent.mkdir(parents=True, exist_ok=True)
        doc = {"team": {**self.team_defaults, **settings}, "agents": agents or demo_agents()}
        self.team_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        self._team = load_team(self.team_file)
        layout.ensure_data_dirs(self._team)
        layout.write_config(self._team)

    @property
    def team(self) -> Team:
        if self._team is None:
            self._team = load_team(self.team_file)
        return self._team

    def cli(self, *args: str, timeout: float = 60, check: bool = False,
            env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "coffee-team"), "--team", str(self.team_file), *args],
                                capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, env=clean_env(env), cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"coffee-team {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def rpc(self, timeout: float = 30):
        return client.Endpoint("unix://" + str(self.sock)).proxy(timeout=timeout)

    def answers(self, timeout: float = 5) -> bool:
        """supervisord is up and RUNNING (not starting, reloading or shutting down)."""
        try:
            return self.rpc(timeout).supervisor.getState()["statename"] == "RUNNING"
        except Exception:
            return False

    def infos(self) -> dict[str, dict]:
        return {i["name"]: i for i in self.rpc().supervisor.getAllProcessInfo()}

    def wait_states(self, want: dict[str, str] | str, timeout: float = 30,
                    interval: float = 0.1, names: Iterable[str] | None = None) -> dict[str, dict]:
        """Wait until each program is in the wanted state; returns getAllProcessInfo by name.

        ``want`` is {name: statename}, or one statename for ``names`` (default: the team)."""
        if isinstance(want, str):
            want = {n: want for n in (self.team.names if names is None else names)}
        deadline = time.monotonic() + timeout
        while True:
            infos = self.infos()
            wrong = {n: infos.get(n, {}).get("statename") for n, s in want.items()
                     if infos.get(n, {}).get("statename") != s}
            if not wrong:
                return infos
            if time.monotonic() > deadline:
                # at most ten: a hundred-agent team would bury the message
                raise WaitTimeout(f"timed out waiting for {set(want.values())}; "
                                  f"not yet: {dict(list(wrong.items())[:10])}")
            time.sleep(interval)

    def supervisord_pid(self) -> int:
        return int(self.pidfile.read_text())

    def supervisord(self) -> psutil.Process | None:
        """This project's live supervisord, if any (the pidfile of a killed one stays behind,
        and its pid may since have gone to a process that is none of ours)."""
        try:
            proc = psutil.Process(self.supervisord_pid())
            if str(self.root) in " ".join(proc.cmdline()):
                return proc
        except (psutil.Error, OSError, ValueError):
            pass
        return None

    def tree(self) -> list[psutil.Process]:
        """supervisord and all its descendants, now."""
        supervisord = self.supervisord()
        if supervisord is None:
            return []
        try:
            return [supervisord] + supervisord.children(recursive=True)
        except psutil.Error:
            return []

    def remember(self) -> None:
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                self._seen[(proc.pid, proc.create_time())] = proc

    def processes(self) -> list[psutil.Process]:
        """Every live process whose command line names this project."""
        found = []
        marker = str(self.root)
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if marker in " ".join(proc.info["cmdline"] or []):
                    found.append(proc)
        return found

    def leftovers(self) -> list[psutil.Process]:
        """What is still alive of everything this project ever started."""
        alive = []
        for (_, created), proc in self._seen.items():
            with contextlib.suppress(psutil.Error):
                if exists(proc) and proc.create_time() == created:
                    alive.append(proc)
        return alive + [p for p in self.processes() if p not in alive]


def boot_supervisord(project: Project, env: dict | None = None, answer_within: float = 20
                     ) -> float:
    """Start supervisord on the project's config and wait until it answers RUNNING.

    Returns the perf_counter taken just before the start (boot timings count from there).
    A plain supervisord spawns every autostart program before it answers: at hundreds of
    programs on a busy machine that can take longer than ``answer_within``'s default."""
    started = time.perf_counter()
    subprocess.run([str(BIN / "supervisord"), "-c", str(project.conf)], check=True,
                   env=clean_env(env), stdin=subprocess.DEVNULL, timeout=30, cwd=project.root)
    wait_until(project.answers, answer_within,
               message=f"supervisord in {project.root} to answer")
    project.remember()
    return started


def shutdown_supervisord(project: Project, fast: bool = False, wait: float = 20) -> float:
    """Stop supervisord, then kill whatever is left; returns the seconds the stop took.

    fast: SIGTERM every child at once rather than wait for supervisord's stop order of one
    program group per ~1 s loop pass (at scale, once the graceful part has been timed)."""
    started = time.perf_counter()
    project.remember()
    _stop_supervisord(project, fast, wait)
    took = time.perf_counter() - started
    kill_leftovers(project)
    return took


def _stop_supervisord(project: Project, fast: bool, wait: float) -> None:
    supervisord = project.supervisord()
    if supervisord is None:
        return  # never booted, or already gone
    with contextlib.suppress(Exception):  # already shutting down
        project.rpc().supervisor.shutdown()
    if fast:
        terminate(project.tree()[1:])
    wait_gone([supervisord], wait)


def exists(proc: psutil.Process) -> bool:
    """Running, and not a zombie: supervisord daemonizes, so once it exits only PID 1 may reap
    it, and a PID 1 that reaps orphans every ~2 s (a container's init) would otherwise add
    those seconds to every shutdown (psutil's wait() waits for the reaping)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> bool:
    """Whether every one of ``procs`` exited (see ``exists``) within ``timeout`` seconds."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while any(exists(p) for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def terminate(procs: Iterable[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()


def kill_leftovers(project: Project) -> None:
    leftovers = project.leftovers()
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_gone(leftovers, 5)
    if leftovers:
        log.warning("killed %d leftover process(es) of %s", len(leftovers), project.root)


@contextlib.contextmanager
def temporary_project(prefix: str = "ct-", team_defaults: dict = FAST_TEAM, fast: bool = False,
                      wait: float = 20) -> Iterator[Project]:
    """A project in a fresh short /tmp path (unix socket paths are limited to 107 bytes),
    shut down (see ``shutdown_supervisord``) and deleted afterwards, however the block ends."""
    project = Project(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), team_defaults)
    try:
        yield project
    finally:
        shutdown_supervisord(project, fast=fast, wait=wait)
        shutil.rmtree(project.root, ignore_errors=True)
