"""Shared fixtures: a throwaway project directory and a real supervisord booted from its
generated config, always shut down (and anything it left behind killed) afterwards."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from coffee_team import client, layout
from coffee_team.team import load_team

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


def demo_agents(work_seconds: float = 0.01) -> dict:
    seed = [("architect", 1, 3600), ("code_developer", 2, 300), ("project_manager", 3, 900),
            ("assistant", 3, 1800), ("code_searcher", 4, 86400), ("ux_design_expert", 4, 3600)]
    return {name: {"priority": prio, "check_interval": interval,
                   "handler": "coffee_team.demo:handle",
                   "options": {"work_seconds": work_seconds}}
            for name, prio, interval in seed}


class Project:
    """A project root in a short temp path (unix socket paths are limited to 107 bytes)."""

    def __init__(self, root: Path):
        self.root = root
        self.team_file = root / "data" / "team.yaml"

    def write_team(self, agents: dict | None = None, **team_overrides) -> None:
        self.team_file.parent.mkdir(parents=True, exist_ok=True)
        doc = {"team": {**FAST_TEAM, **team_overrides}, "agents": agents or demo_agents()}
        self.team_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        team = self.team
        layout.ensure_data_dirs(team)
        layout.write_config(team)

    @property
    def team(self):
        return load_team(self.team_file)

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf.d" / "supervisord.conf"

    def cli(self, *args: str, timeout: float = 60, check: bool = False,
            env: dict | None = None) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        environ.update(env or {})
        result = subprocess.run([str(BIN / "coffee-team"), "--team", str(self.team_file), *args],
                                capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, env=environ, cwd=self.root)
        if check and result.returncode != 0:
            raise AssertionError(f"coffee-team {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def rpc(self):
        return client.endpoint_for(self.team).proxy(timeout=30)

    def processes(self) -> list[psutil.Process]:
        """Every live process started from this project (supervisord, agents, listener)."""
        found = []
        marker = str(self.root)
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if marker in " ".join(proc.info["cmdline"] or []):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def wait_states(self, want: dict[str, str] | str, timeout: float = 30) -> dict[str, dict]:
        names = self.team.names
        want = {n: want for n in names} if isinstance(want, str) else want
        deadline = time.monotonic() + timeout
        while True:
            infos = {i["name"]: i for i in self.rpc().supervisor.getAllProcessInfo()}
            if all(infos.get(n, {}).get("statename") == s for n, s in want.items()):
                return infos
            if time.monotonic() > deadline:
                states = {n: infos.get(n, {}).get("statename") for n in want}
                raise AssertionError(f"timed out waiting for {want}; states now {states}")
            time.sleep(0.1)

    def kill_everything(self) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def project():
    root = Path(tempfile.mkdtemp(prefix="ct-", dir="/tmp"))
    proj = Project(root)
    try:
        yield proj
    finally:
        _shutdown(proj)
        shutil.rmtree(root, ignore_errors=True)


def _shutdown(proj: Project) -> None:
    try:
        proxy = proj.rpc()
        pid = proxy.supervisor.getPID()
        proxy.supervisor.shutdown()
        try:
            psutil.Process(pid).wait(20)
        except psutil.Error:
            pass
    except Exception:
        pass
    proj.kill_everything()


@pytest.fixture
def running_team(project):
    """The demo team (fast timings) booted with a plain ``supervisord -c``, all RUNNING."""
    project.write_team()
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    return project


def boot_supervisord(project: Project, env: dict | None = None) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    environ.update(env or {})
    subprocess.run([str(BIN / "supervisord"), "-c", str(project.conf)], check=True,
                   env=environ, stdin=subprocess.DEVNULL, timeout=30)
    wait_until(lambda: client.is_running(client.endpoint_for(project.team)), 20,
               message="supervisord to answer")


def supervisord_pid(project: Project) -> int:
    return int((project.root / "data" / "run" / "supervisord.pid").read_text())



@pytest.fixture
def reliability():
    """Record one row of the reliability table (RELIABILITY.md) when the report runs.

    ``bench/reliability.py`` sets COFFEE_RELIABILITY_OUT and renders the rows it collects.
    """
    import json

    def record(scenario: str, load: str, faults: str, lost: int, duplicated: str,
               recovery: str) -> None:
        out = os.environ.get("COFFEE_RELIABILITY_OUT")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"scenario": scenario, "load": load, "faults": faults,
                                    "lost": lost, "duplicated": duplicated,
                                    "recovery": recovery}) + "\n")
    return record
