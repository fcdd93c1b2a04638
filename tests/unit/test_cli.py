"""The ``coffee-team`` CLI through click's CliRunner: help everywhere, gen-config and --check,
one-line user errors with the documented exit codes, and doctor without a server."""
from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from coffee_team import confgen
from coffee_team.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "team.yaml"


def walk(command: click.Command, path: tuple[str, ...] = ()):
    """Every command as --help lists it (loading the lazily imported ones)."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, name), path + (name,))


COMMANDS = list(walk(main))


@pytest.fixture(autouse=True)
def no_server_url(monkeypatch):
    for name in ("SUPERVISOR_SERVER_URL", "SUPERVISOR_USERNAME", "SUPERVISOR_PASSWORD",
                 "COFFEE_TEAM"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def team_file(tmp_path) -> Path:
    """A project in tmp: data/team.yaml is the demo team (so no real server is ever found),
    run by the interpreter the tests run from (no team.python: tmp has no .venv)."""
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(DEMO.read_text().replace("  python: .venv/bin/python\n", ""))
    assert "python:" not in path.read_text()
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_the_walk_finds_the_documented_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "init", "gen-config", "start", "stop", "restart", "status", "doctor", "agent",
            "agent run"} <= names


def test_each_lazy_command_is_registered_by_the_module_that_names_it():
    from coffee_team.cli.base import COMMAND_MODULES
    assert set(main.commands) == set(COMMAND_MODULES)  # the walk imported every module
    for name, module in COMMAND_MODULES.items():
        assert main.commands[name].callback.__module__ == f"coffee_team.cli.{module}", name


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "main")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(path, flag, tmp_path):
    # a team that does not exist: help must never need the team file
    result = run("--team", str(tmp_path / "missing" / "team.yaml"), *path, flag)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert result.output.splitlines()[0].startswith(f"Usage: {' '.join(('main',) + path)} ")
    command = dict(COMMANDS)[path]
    if command.help:
        assert command.help.splitlines()[0].strip()[:30] in " ".join(result.output.split())


def test_gen_config_then_check(team_file):
    result = run("--team", str(team_file), "gen-config")
    assert result.exit_code == 0, result.output
    conf_dir = team_file.parent.parent / "supervisord.conf.d"
    written = {line.removeprefix("wrote ") for line in result.output.splitlines()}
    assert written == {str(conf_dir / n) for n in confgen.render(_team(team_file))}
    check = run("--team", str(team_file), "gen-config", "--check")
    assert check.exit_code == 0, check.output
    assert "up to date (6 agents)" in check.output
    again = run("--team", str(team_file), "gen-config")
    assert again.exit_code == 0 and "already up to date" in again.output


def _team(path: Path):
    from coffee_team.team import load_team
    return load_team(path)


def test_check_without_generated_config_fails(team_file):
    line = assert_one_line_error(run("--team", str(team_file), "gen-config", "--check"), 1)
    assert "stale generated config" in line and "supervisord.conf" in line


def test_editing_the_team_makes_check_fail_and_name_the_file(team_file):
    assert run("--team", str(team_file), "gen-config").exit_code == 0
    team_file.write_text(team_file.read_text().replace("priority: 1\n", "priority: 5\n"))
    line = assert_one_line_error(run("--team", str(team_file), "gen-config", "--check"), 1)
    assert "agent-architect.conf" in line and "agent-code_developer.conf" not in line
    assert "run `coffee-team gen-config`" in line
    assert run("--team", str(team_file), "gen-config").exit_code == 0
    assert run("--team", str(team_file), "gen-config", "--check").exit_code == 0


def test_removing_an_agent_names_the_stale_file(team_file):
    assert run("--team", str(team_file), "gen-config").exit_code == 0
    text = team_file.read_text()
    team_file.write_text(text[:text.index("  ux_design_expert:")])
    line = assert_one_line_error(run("--team", str(team_file), "gen-config", "--check"), 1)
    assert "agent-ux_design_expert.conf (no longer in the team)" in line
    result = run("--team", str(team_file), "gen-config")
    assert result.exit_code == 0 and "removed" in result.output
    assert not (team_file.parent.parent / "supervisord.conf.d" /
                "agent-ux_design_expert.conf").exists()


@pytest.mark.parametrize("text, expected", [
    ("agents:\n  architect:\n    priority: high\n", "agents.architect.priority: expected an integer"),
    ("agents: {a: {}\n", "invalid YAML"),
    ("- a\n", "expected a mapping"),
    ("agents:\n  a: {}\n  a: {}\n", "duplicate key 'a'"),
    (None, "team file not found"),
])
@pytest.mark.parametrize("command", [("gen-config",), ("gen-config", "--check"), ("status",),
                                     ("start",), ("stop",), ("restart", "a")])
def test_bad_team_file_is_exit_2_and_one_line(tmp_path, text, expected, command):
    path = tmp_path / "data" / "team.yaml"
    if text is not None:
        path.parent.mkdir(parents=True)
        path.write_text(text)
    line = assert_one_line_error(run("--team", str(path), *command), 2)
    assert line.startswith(f"Error: {path}: ") and expected in line


def test_team_option_also_comes_from_the_environment(team_file, monkeypatch):
    monkeypatch.setenv("COFFEE_TEAM", str(team_file))
    assert run("gen-config").exit_code == 0
    assert (team_file.parent.parent / "supervisord.conf.d" / "supervisord.conf").exists()


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_status_without_supervisord_is_exit_3(team_file, args):
    assert run("--team", str(team_file), "gen-config").exit_code == 0
    line = assert_one_line_error(run("--team", str(team_file), *args), 3)
    assert "supervisord is not running" in line and "coffee-team start" in line
    assert str(team_file.parent / "run" / "supervisor.sock") in line


def test_stop_without_supervisord_is_exit_3(team_file):
    line = assert_one_line_error(run("--team", str(team_file), "stop"), 3)
    assert "supervisord is not running" in line


def test_unknown_agent_is_exit_2(team_file):
    line = assert_one_line_error(run("--team", str(team_file), "restart", "nobody"), 2)
    assert "unknown agent(s) nobody" in line and "architect" in line


def test_doctor_without_supervisord(team_file):
    result = run("--team", str(team_file), "doctor")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    checks = {line[5:].split(":", 1)[0]: line for line in lines}
    assert len(checks) == len(lines)  # one line per check
    assert all(line[:5] in ("ok   ", "FAIL ") for line in lines), lines
    assert checks["team file"].startswith("ok")
    assert checks["supervisord"].startswith("FAIL") and "not reachable" in checks["supervisord"]
    assert checks["generated config"].startswith("FAIL")  # never generated here
    assert checks["data directories"].startswith("ok")


def test_doctor_after_gen_config_only_fails_on_supervisord(team_file):
    assert run("--team", str(team_file), "gen-config").exit_code == 0
    result = run("--team", str(team_file), "doctor")
    assert result.exit_code == 1, result.output
    failing = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in failing] == ["FAIL supervisord"]


def test_doctor_with_a_bad_team_file(tmp_path):
    path = tmp_path / "data" / "team.yaml"
    result = run("--team", str(path), "doctor")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"FAIL team file: {path}: team file not found (create it, or pass --team PATH)"]


def test_client_fault_codes_match_supervisor():
    from supervisor.xmlrpc import Faults

    from coffee_team import client
    mirrored = {k: v for k, v in vars(client.Faults).items() if k.isupper()}
    assert mirrored and all(getattr(Faults, k) == v for k, v in mirrored.items())
