"""A new user's path, for real: the wheel built from this checkout, installed (not editable)
into a fresh venv outside the checkout, `coffee-team init` in a new git repository, `start`,
a task through both agents, a kill -9 the watchdog mends, `stop`, nothing left running; once
with the venv inside the project, once with the tool in a venv of its own (pipx style, no
team.python). Then each way a program used to fail silently, now one line that names it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import Project, boot_supervisord, clean_env, temporary_project, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BOOT_LIMIT = 10.0  # seconds from `coffee-team init` to a running team (issue #23)
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "data", "tests", "bench", "build", "dist",
                                    "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built from a copy (a build writes build/ and egg-info)."""
    source = tmp_path_factory.mktemp("source") / "coffee-team"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(out), str(source)],
                   check=True, timeout=600, stdin=subprocess.DEVNULL)
    (built,) = out.glob("coffee_team-*.whl")
    return built


@pytest.fixture(scope="module")
def tool(tmp_path_factory, wheel) -> Path:
    """coffee-team installed from the wheel into a venv of its own (as pipx does): its bin/."""
    return install(tmp_path_factory.mktemp("tool") / "venv", wheel)


def install(venv: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=600, stdin=subprocess.DEVNULL)
    return venv / "bin"


def git_repository(root: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "README.md").write_text("my project\n")
    subprocess.run(["git", "add", "README.md"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=root, check=True)


def ct(bin_dir: Path, root: Path, *args: str, env: dict | None = None,
       timeout: float = 90) -> subprocess.CompletedProcess:
    """The installed coffee-team, run in the project as its user would (no --team)."""
    environ = clean_env(env)
    environ.pop("COFFEE_TEAM", None)
    environ.pop("PYTHONPATH", None)  # nothing of this checkout may leak into the install
    return subprocess.run([str(bin_dir / "coffee-team"), *args], cwd=root, env=environ,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    # what it waited for meanwhile ("waiting for watchdog (BACKOFF) to run... 2 s") is no error
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith("waiting for ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def task(bin_dir: Path, root: Path, task_id: int) -> dict | None:
    result = ct(bin_dir, root, "task", "show", str(task_id), "--json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def agent_pid(bin_dir: Path, root: Path, name: str) -> int:
    status = json.loads(ok(ct(bin_dir, root, "status", "--json")))
    (agent,) = [a for a in status["agents"] if a["name"] == name]
    return agent["pid"] if agent["state"] == "RUNNING" else 0


def the_user_path(bin_dir: Path, project: Project) -> float:
    """init, start, a draft through writer and reviewer, kill -9 writer, stop, nothing left;
    the seconds init and start took."""
    root = project.root
    began = time.perf_counter()
    init = ok(ct(bin_dir, root, "init"))
    took = time.perf_counter() - began
    assert "commit: git add data/team.yaml" in init and "then:" in init
    # a first crash restart after 1 s instead of the default 60 s (not in the generated
    # config: nothing else changes), so the test is short
    team_file = root / "data" / "team.yaml"
    team_file.write_text(team_file.read_text().replace("team:\n", "team:\n  restart_backoff: 1\n"))
    began = time.perf_counter()
    ok(ct(bin_dir, root, "start"))
    took += time.perf_counter() - began
    project.remember()

    status = json.loads(ok(ct(bin_dir, root, "status", "--json")))
    assert status["agents_running"] == 2
    assert {p["name"]: p["state"] for p in status["programs"]} == {"watchdog": "RUNNING"}
    sent = ok(ct(bin_dir, root, "send", "-", "draft", "--content", '{"text": "ship it"}'))
    draft = int(sent.split()[-1])
    review = wait_until(lambda: (t := task(bin_dir, root, draft + 1)) and
                        t["status"] == "completed" and t, 20, 0.2, "the follow-up review")
    assert task(bin_dir, root, draft)["result"] == {"draft": "Ship it."}
    assert (review["sender"], review["recipient"], review["result"]) == (
        "writer", "reviewer", {"approved": True, "words": 2})

    victim = agent_pid(bin_dir, root, "writer")
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: agent_pid(bin_dir, root, "writer") not in (0, victim), 30, 0.2,
               "the watchdog to restart writer")
    project.remember()
    ok(ct(bin_dir, root, "stop"))
    wait_until(lambda: not project.leftovers(), 10, 0.1, "nothing left running")
    return took


def test_pip_install_into_the_projects_venv_then_init_and_start(wheel, capsys):
    with temporary_project(prefix="ct-venv-") as project:
        git_repository(project.root)
        bin_dir = install(project.root / ".venv", wheel)
        took = the_user_path(bin_dir, project)
        conf = (project.root / "supervisord.conf.d" / "supervisord.conf").read_text()
        # the project's own venv: relative, the same in every clone
        assert 'command="%(here)s/../.venv/bin/python" -m coffee_team.watchdog' in conf
        assert "/supervisord.conf.d/" not in (project.root / ".gitignore").read_text()
    with capsys.disabled():
        print(f"\n  init + start, coffee-team in the project's venv: {took:.2f} s")
    assert took < BOOT_LIMIT


def test_a_tool_venv_outside_the_project_without_team_python(tool, capsys):
    with temporary_project(prefix="ct-tool-") as project:
        git_repository(project.root)
        took = the_user_path(tool, project)
        assert "\n  python:" not in (project.root / "data" / "team.yaml").read_text()
        conf = (project.root / "supervisord.conf.d" / "supervisord.conf").read_text()
        assert f'command="{tool / "python"}" -m coffee_team.watchdog' in conf
        assert "/supervisord.conf.d/" in (project.root / ".gitignore").read_text()
        ok(ct(tool, project.root, "gen-config", "--check"))
    with capsys.disabled():
        print(f"\n  init + start, coffee-team in a venv of its own: {took:.2f} s")
    assert took < BOOT_LIMIT


# --- what used to fail silently ---------------------------------------------------------------

AGENTS = {"a": {"priority": 1, "check_interval": 3600, "handler": "coffee_team.agent.demo:handle"}}


def wrapper(path: Path, refuse_module: str) -> Path:
    """An interpreter with an old coffee-team, as it were: it runs everything but
    ``-m refuse_module``, which fails as python itself says a missing module does."""
    path.write_text(f"""#!/bin/sh
if [ "$1" = -m ] && [ "$2" = {refuse_module} ]; then
    echo "$0: No module named {refuse_module}.__main__; '{refuse_module}' is a package and \\
cannot be directly executed" >&2
    exit 1
fi
exec {sys.executable} "$@"
""")
    path.chmod(0o755)
    return path


def stopped_at_first_failure(project: Project, program: str, took: float, capsys) -> None:
    """The start ended at the program's first failure, not at supervisord's give-up after its
    retries (FATAL), nor at its own timeout (60 s from the last program up; the line would say
    what it waited for): events, not a wall-clock bound, which the start's CPU work (five
    interpreters: the CLI, supervisord, the helpers, an agent) stretches 20-fold on a loaded
    machine (a bound of 10 s failed at 17-30 s under a load average of 40-100 on 2 cores)."""
    assert project.supervisord() is None  # stopped again: the next start reads a mended config
    log = (project.root / "data" / "logs" / "supervisord.log").read_text()
    assert f"gave up: {program} entered FATAL state" not in log
    wait_until(lambda: not project.leftovers(), 10, 0.1, "nothing left running")
    with capsys.disabled():
        print(f"\n  start failed on {program} after {took:.2f} s "
              f"(load average {os.getloadavg()[0]:.1f})")


def test_a_listener_that_cannot_start_fails_start_at_once_naming_it(capsys):
    with temporary_project(prefix="ct-nolistener-") as project:
        project.write_team(AGENTS, python=str(wrapper(project.root / "python",
                                                      "coffee_team.watchdog")))
        began = time.perf_counter()
        result = project.cli("start")
        took = time.perf_counter() - began
        line = one_line_error(result, 1)
        assert line.startswith("Error: watchdog failed to start (BACKOFF): ")
        assert "No module named coffee_team.watchdog.__main__" in line
        assert line.endswith("; see data/logs/watchdog.log; supervisord stopped again")
        stopped_at_first_failure(project, "watchdog", took, capsys)


def test_a_missing_interpreter_is_one_line_before_and_after_boot():
    with temporary_project(prefix="ct-nopython-") as project:
        python = project.root / "venv-python"
        wrapper(python, "nothing")  # the venv's python, as it were
        project.write_team(AGENTS, python=str(python))
        named = f"{project.root}/supervisord.conf.d/../venv-python"  # as the config has it
        python.unlink()  # the venv was removed after the config was generated
        line = one_line_error(project.cli("start"), 2)
        assert f"team.python: {python} does not exist" in line
        assert project.supervisord() is None

        boot_supervisord(project)  # a plain supervisord on the same config
        infos = wait_until(lambda: (i := project.infos())["watchdog"]["statename"] in
                           ("BACKOFF", "FATAL") and i, 15, 0.1, "the watchdog to fail")
        assert infos["watchdog"]["spawnerr"] == f"can't find command '{named}'"
        status = project.cli("status")
        assert status.returncode == 0
        assert f"  watchdog: {infos['watchdog']['statename']} (can't find command" in \
            status.stdout
        as_json = json.loads(project.cli("status", "--json").stdout)
        assert [p["name"] for p in as_json["programs"]] == ["watchdog"]
        line = one_line_error(project.cli("restart", "a"), 1)
        assert line.startswith(f"Error: supervisord refused startProcess a: NO_FILE: can't "
                               f"find command '{named}'; ")
        assert "team.python" in line
        wait_until(lambda: project.infos()["watchdog"]["statename"] == "FATAL", 20, 0.2,
                   "supervisord to give the watchdog up")  # bounded: no endless respawns
        wrapper(python, "nothing")  # back, but nothing runs the watchdog again:
        line = one_line_error(project.cli("start"), 1)  # a start would run unwatched agents
        assert line == (f"Error: watchdog is FATAL: can't find command '{named}'; mend it, "
                        f"then `coffee-team stop` and `coffee-team start`")
        project.cli("stop", check=True)


def test_an_unset_password_variable_is_one_line(monkeypatch):
    monkeypatch.delenv("CT_UNSET_PASSWORD", raising=False)
    with temporary_project(prefix="ct-nopass-") as project:
        port = free_port()
        web = {"port": port, "username": "ops", "password_env": "CT_UNSET_PASSWORD"}
        for key in ("http", "web"):
            project.write_team(AGENTS, **{key: web})
            line = one_line_error(project.cli("start"), 2)
            assert f"team.{key}.password_env: the environment variable CT_UNSET_PASSWORD " \
                   f"is not set; export it before `coffee-team start`" in line
            assert project.supervisord() is None

        boot_supervisord(project)  # plain supervisord: the web program says why it stops
        wait_until(lambda: project.infos()["web"]["statename"] in ("BACKOFF", "FATAL"), 15,
                   0.1, "the web program to fail")
        status = project.cli("status").stdout
        assert "  web: " in status
        assert "team.web.password_env: the environment variable CT_UNSET_PASSWORD is not " \
               "set" in status


@pytest.mark.parametrize("web_startup", [0, 1.2])
def test_a_web_program_that_cannot_listen_fails_start_naming_it(web_startup, capsys):
    """``web_startup``: seconds the web program's interpreter takes to start, past its
    startsecs (1) as on a loaded machine, where supervisord calls each attempt RUNNING and
    respawns it at once when it exits, never BACKOFF: the start said the team ran, or named
    supervisord's "Bad exit code 2" instead of the program's line. The agents' startsecs is
    5 there, so the web program has exited before the agent runs."""
    with temporary_project(prefix="ct-busyport-") as project, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        slow = {}
        if web_startup:
            python = project.root / "python"
            python.write_text(f"""#!/bin/sh
case "$*" in "-m coffee_team.web "*) sleep {web_startup} ;; esac
exec {sys.executable} "$@"
""")
            python.chmod(0o755)
            slow.update(python=str(python), start_seconds=5)
        project.write_team(AGENTS, web={"port": port, "username": "ops",
                                        "password_env": "CT_WEB_PASSWORD"}, **slow)
        began = time.perf_counter()
        result = project.cli("start", env={"CT_WEB_PASSWORD": "secret"})
        took = time.perf_counter() - began
        line = one_line_error(result, 1)
        # its first exit: within its first second (BACKOFF), or past it ("exited")
        assert re.match(r"Error: web failed to start \((BACKOFF|exited)\): ", line), line
        assert f"cannot listen on 127.0.0.1:{port}" in line
        stopped_at_first_failure(project, "web", took, capsys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_installed_tool_names_the_extra_a_team_needs(tool, tmp_path):
    """The wheel without extras: each optional dependency a team file asks for is one line
    naming the extra to install."""
    root = tmp_path / "proj"
    root.mkdir()
    version = ok(ct(tool, root, "--version"))
    assert version.startswith("coffee-team, version ")
    for example in ("starter", "demo"):
        ok(ct(tool, root, "init", "--example", example, "--force"))
    team_file = root / "data" / "team.yaml"
    text = team_file.read_text()
    team_file.write_text(text.replace("database_path: data/orchestrator.db",
                                      "database_path: postgresql://u@127.0.0.1/x"))
    line = one_line_error(ct(tool, root, "gen-config"), 2)
    assert line.endswith("needs the PostgreSQL driver psycopg2: pip install "
                         "'coffee-team[postgres]'")
    team_file.write_text(text.replace("team:\n", "team:\n  notify: [{url: 'json://h/x'}]\n"))
    line = one_line_error(ct(tool, root, "gen-config"), 2)
    assert line == "Error: team.notify: url targets needs Apprise: pip install " \
                   "'coffee-team[notify]'"
    team_file.write_text(text)
    traced = ct(tool, root, "send", "-", "question",
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"})
    assert traced.returncode == 0, traced.stderr  # sent, without traces
    assert traced.stderr.strip().splitlines() == [
        "coffee-team: tracing (asked for by the OTEL_* variables) needs the OpenTelemetry SDK "
        "and its OTLP exporter: pip install 'coffee-team[otel]'; tracing is off"]
