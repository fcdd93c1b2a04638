"""What the agent and ``coffee-team status`` import: each runs its real entry in a fresh
interpreter, which then lists sys.modules.

Memory per idle agent and the CLI's start-up time are mostly imports (bench/imports_bench.py
measures them); these tests keep modules a process does not need out of it.
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coffee_team.queue import MessageQueue
from coffee_team.team import snapshot
from tests.fast_team import temp_root, write_team

pytestmark = pytest.mark.slow  # the tests here start processes

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}

# ``python -m coffee_team --team T agent run worker`` for real (lock, queue, requeue, the
# handler loaded, the first heartbeat written, its threads started), up to the agent's loop,
# where it lists its modules (those loaded in full: agent/lean.py defers some, as __main__
# does first) and its threads instead of looping.
AGENT_ENTRY = """
import json, os, runpy, sys, threading
from coffee_team.agent import lean
lean.defer()
import coffee_team.agent.runtime as agent
def list_modules(self):
    print(json.dumps({"modules": sorted(k for k, v in sys.modules.items() if lean.loaded(k)),
                      "threads": sorted(t.name for t in threading.enumerate())}), flush=True)
    os._exit(0)
agent.Agent.loop = list_modules
sys.argv = ["coffee_team", "--team", sys.argv[1], "agent", "run", "worker"]
runpy.run_module("coffee_team", run_name="__main__")
"""
# ``coffee-team --team T status`` (no supervisord: it exits 3), then its modules.
STATUS_ENTRY = """
import json, sys
from coffee_team.cli import main
try:
    main(["--team", sys.argv[1], "status"])
except SystemExit:
    pass
print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))
"""
# Packages a plain agent on SQLite never uses: the CLI, llm agents, tracing and metrics
# exporters, supervisor's client, the PostgreSQL drivers, the process table's psutil, and on a
# database whose schema is current the ORM (only migrations need it) with what it brings.
NOT_FOR_AN_AGENT = ("click", "coffee_team.cli", "coffee_team.llm", "coffee_team.team.llm",
                    "opentelemetry", "prometheus_client", "supervisor", "psycopg2", "psycopg", "psutil",
                    "coffee_team.confgen", "peewee", "coffee_team.queue.models", "hashlib",
                    "uuid", "decimal", "logging", "cronsim", "zoneinfo", "coffee_team.rules",
                    "mcp", "coffee_team.mcpserver", "coffee_team.ops",
                    "coffee_team.agent.memguard",  # only with memory_limit_mb
                    # the instance row and its thread: PostgreSQL's (agent/instance.py)
                    "coffee_team.agent.instance", "coffee_team.proctable",
                    # dataclasses' docstring maker, its asdict's copy, urllib.parse's
                    # check of a [bracketed] host (agent/lean.py)
                    "inspect", "ast", "dis", "tokenize", "linecache", "copy", "weakref",
                    "ipaddress",
                    # parentwatch.children lists /proc with os.listdir
                    "glob",
                    # its unix datagram sockets (wake-ups, the ready poke) are _socket's
                    "socket", "selectors")
# What an agent starting from a fresh snapshot of its team file (team/snapshot.py) never
# loads: the YAML parser and the team file's checkers; nor, for one running a command or a
# Python handler, the process machinery before a task needs it.
NOT_FROM_A_SNAPSHOT = ("yaml", "_yaml", "coffee_team.team.parse", "coffee_team.team.fields",
                       "coffee_team.team.schedule")
NOT_BEFORE_A_TASK = ("subprocess", "shutil", "tempfile")
# What `status` does not need: the other commands, the queue and its driver, llm checkers.
NOT_FOR_STATUS = ("coffee_team.cli.data", "coffee_team.cli.tasks", "coffee_team.cli.costs",
                  "coffee_team.cli.live", "coffee_team.queue", "peewee", "sqlite3",
                  "coffee_team.llm", "supervisor", "subprocess", "concurrent.futures",
                  "coffee_team.cli.hosts")


def run_entry(entry: str, team_file: Path, env: dict | None = None) -> dict | list:
    out = subprocess.run([sys.executable, "-c", entry, str(team_file)], capture_output=True,
                         text=True, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL,
                         env={**ENV, **(env or {})})
    assert out.returncode in (0, 3), out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def modules_of(entry: str, team_file: Path) -> list[str]:
    found = run_entry(entry, team_file)
    return found["modules"] if isinstance(found, dict) else found


@functools.lru_cache(maxsize=None)
def at_site() -> frozenset[str]:
    """The modules this environment's python holds before any code of ours runs. An editable
    install's finder (its .pth) imports pathlib, urllib.parse and with it ipaddress into every
    python of its venv at ``site``: not the agent's doing, so not counted against it (a
    wheel's venv, what users run, loads none of them)."""
    out = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
                         stdin=subprocess.DEVNULL, env=ENV)
    return frozenset(out.stdout.split())


def inside(modules: list[str] | set[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m not in at_site()
            and any(m == p or m.startswith(p + ".") for p in packages)]


def test_a_plain_agent_on_sqlite_imports_only_what_it_uses():
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle"}})
        MessageQueue.from_team(team).close()  # the watchdog migrates before it launches agents
        modules = modules_of(AGENT_ENTRY, team.path)
    assert "coffee_team.queue.core" in modules and "coffee_team.agent.demo" in modules  # it got there
    assert inside(modules, NOT_FOR_AN_AGENT) == []


def test_an_agent_starting_from_the_snapshot_reads_no_yaml():
    with temp_root() as root:
        team = write_team(root, {"worker": {"command": ["true"]},
                                 "helper": {"handler": "coffee_team.agent.demo:handle"}})
        MessageQueue.from_team(team).close()
        assert snapshot.write_snapshot(team.path) is not None  # as gen-config and start do
        modules = modules_of(AGENT_ENTRY, team.path)
        helper = modules_of(AGENT_ENTRY.replace('"worker"', '"helper"'), team.path)
    assert "coffee_team.team.snapshot" in modules and "coffee_team.queue.core" in modules
    assert inside(modules, NOT_FOR_AN_AGENT + NOT_FROM_A_SNAPSHOT + NOT_BEFORE_A_TASK) == []
    assert inside(helper, NOT_FOR_AN_AGENT + NOT_FROM_A_SNAPSHOT + NOT_BEFORE_A_TASK) == []


def test_an_idle_agent_on_sqlite_runs_only_its_heartbeat_threads():
    """No instance row on SQLite (agent/instance.py), so no thread of its own nor a second
    connection; the pulse's two threads keep the heartbeat while the loop waits."""
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle"}})
        MessageQueue.from_team(team).close()
        snapshot.write_snapshot(team.path)
        found = run_entry(AGENT_ENTRY, team.path, {"SUPERVISOR_ENABLED": "1"})
    assert found["threads"] == ["MainThread", "worker-beats", "worker-heartbeat"]
    assert inside(found["modules"], NOT_FOR_AN_AGENT) == []


def test_the_agents_command_line_defers_inspect_until_something_uses_it():
    """``python -m coffee_team ... agent run`` itself (not the entry above) leaves inspect,
    copy and ipaddress unloaded through its start-up, and each deferred module still works
    when asked."""
    import signal
    import time
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle"}})
        MessageQueue.from_team(team).close()
        beat = team.status_dir / "worker_status.json"
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "coffee_team",
                                 "--team", str(team.path), "agent", "run", "worker"],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                env=ENV)
        try:
            deadline = time.monotonic() + 30
            while not beat.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert beat.exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
    imported = {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
                if line.startswith("import time:")}
    assert "coffee_team.queue.core" in imported and "dataclasses" in imported
    assert inside(imported, ("ast", "dis", "tokenize", "copy", "ipaddress")) == []
    used = subprocess.run([sys.executable, "-c", (
        "import sys\nsite = set(sys.modules)\nfrom coffee_team.agent import lean\nlean.defer()\n"
        "import dataclasses, inspect, pathlib, urllib.parse\n"
        "assert not any(lean.loaded(m) for m in lean.DEFERRED if m not in site)\n"
        "from inspect import signature\nassert lean.loaded('inspect') and 'ast' in sys.modules\n"
        "assert urllib.parse.urlsplit('http://[::1]:80/').hostname == '::1'\n"
        "from coffee_team.taskstate import RetryPolicy\n"
        "assert dataclasses.asdict(RetryPolicy(on=(2,)))['on'] == (2,)\n"
        "assert lean.loaded('ipaddress') and lean.loaded('copy')\n"
        "print(signature(lean.defer), inspect.isclass(int))")],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env=ENV)
    assert used.returncode == 0, used.stderr
    assert used.stdout.split()[-1] == "True"


def test_a_stale_snapshot_brings_the_yaml_parser_in():
    """The check above can fail: a team file changed since its snapshot is parsed."""
    with temp_root() as root:
        team = write_team(root, {"worker": {"command": ["true"]}})
        MessageQueue.from_team(team).close()
        snapshot.write_snapshot(team.path)
        team.path.write_text(team.path.read_text() + "# edited\n")
        modules = modules_of(AGENT_ENTRY, team.path)
    assert {"yaml", "coffee_team.team.parse"} <= set(modules)


def test_an_agent_that_must_upgrade_the_schema_brings_peewee_in():
    """The check above can fail: upgrading the schema needs the ORM's models (an agent never
    creates a database: the watchdog or start does)."""
    import sqlite3

    from coffee_team.queue.tables import SCHEMA_VERSION
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle"}})
        conn = sqlite3.connect(team.database_url)  # as made by the version before
        conn.execute("UPDATE schema_version SET version = ? WHERE version = ?",
                     (SCHEMA_VERSION - 1, SCHEMA_VERSION))
        conn.commit()
        conn.close()
        modules = modules_of(AGENT_ENTRY, team.path)
    assert {"peewee", "coffee_team.queue.models"} <= set(inside(modules, NOT_FOR_AN_AGENT))


def test_an_llm_team_file_brings_the_llm_checkers_in():
    """The check above can fail: the llm package is imported as soon as a team needs it."""
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle"}})
        document = yaml.safe_load(team.path.read_text())
        document["agents"]["coder"] = {"llm": {"command": ["true"], "preset": "text"}}
        team.path.write_text(yaml.safe_dump(document))
        modules = modules_of(AGENT_ENTRY, team.path)
    assert "coffee_team.team.llm" in inside(modules, NOT_FOR_AN_AGENT)


def test_an_agent_with_a_schedule_leaves_it_to_the_watchdog():
    """The schedule's evaluation (cronsim, zoneinfo) is the watchdog's; `status` shows the
    next run, so it imports cronsim (the check above can fail)."""
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle",
                                            "schedule": [{"cron": "0 9 * * 1-5", "type": "t",
                                                          "timezone": "Europe/Paris"}]}})
        MessageQueue.from_team(team).close()
        agent_modules = modules_of(AGENT_ENTRY, team.path)
        status_modules = modules_of(STATUS_ENTRY, team.path)
    assert "coffee_team.queue.core" in agent_modules
    assert inside(agent_modules, NOT_FOR_AN_AGENT) == []
    assert {"cronsim", "coffee_team.rules.cron"} <= set(status_modules)


def test_an_llm_agent_whose_calls_a_person_approves_never_loads_the_mcp_sdk():
    """Its CLI starts the MCP server, a process of its own; the agent only writes the config."""
    with temp_root() as root:
        team = write_team(root, {"coder": {"llm": {"command": ["claude", "-p"]}}})
        assert team.agent("coder").approvals is not None  # auto_approve false: a person asks
        MessageQueue.from_team(team).close()
        modules = modules_of(AGENT_ENTRY.replace('"worker"', '"coder"'), team.path)
    assert "coffee_team.llm.runner" in modules
    assert inside(modules, ("mcp", "coffee_team.mcpserver", "coffee_team.ops")) == []


def test_status_imports_only_its_own_command():
    with temp_root() as root:
        team = write_team(root, {"worker": {"handler": "coffee_team.agent.demo:handle"}})
        modules = modules_of(STATUS_ENTRY, team.path)
    assert "coffee_team.cli.lifecycle" in modules and "coffee_team.status" in modules
    assert inside(modules, NOT_FOR_STATUS) == []
