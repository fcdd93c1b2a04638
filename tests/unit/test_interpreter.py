"""The interpreter the programs run with: team.python, else the one coffee-team runs from
(relative to the project inside it, absolute outside), and the one-line refusals of
gen-config, start and doctor when it cannot run them (those that run another interpreter:
tests/integration/test_interpreter_live.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coffee_team import confgen
from coffee_team.team import interpreter
from coffee_team.cli import main
from coffee_team.team import parse_team


def project(root: Path, **settings):
    path = root / "data" / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    team = {"team": settings, "agents": {"a": {"handler": "coffee_team.agent.demo:handle"}}}
    import yaml
    path.write_text(yaml.safe_dump(team))
    return parse_team(team, str(path), path)


def watchdog_command(team) -> str:
    text = confgen.render(team)["supervisord.conf"]
    return next(line for line in text.splitlines()
                if line.startswith("command=") and "coffee_team.watchdog" in line)


def test_unset_python_outside_the_project_is_the_running_interpreter_absolute(tmp_path):
    team = project(tmp_path / "proj")
    exe = str(interpreter.running_python())
    assert not exe.startswith(str(tmp_path))
    assert watchdog_command(team).startswith(f'command="{exe}" -m coffee_team.watchdog --team')


def test_unset_python_inside_the_project_is_relative_so_every_clone_says_the_same(
        tmp_path, monkeypatch):
    for root in (tmp_path / "one", tmp_path / "two"):
        team = project(root)
        venv_python = root / ".venv" / "bin" / "python3"
        venv_python.parent.mkdir(parents=True)
        venv_python.symlink_to(os.path.realpath(sys.executable))  # a venv's python is a link
        (venv_python.parent / "python").symlink_to("python3")
        # a console script runs bin/python3: the config still names bin/python
        monkeypatch.setattr(sys, "executable", str(venv_python))
        assert interpreter.program_python(team) == ".venv/bin/python"
        assert watchdog_command(team).startswith(
            'command="%(here)s/../.venv/bin/python" -m coffee_team.watchdog')


def test_a_set_python_is_written_as_set(tmp_path):
    team = project(tmp_path, python=".venv/bin/python")
    assert watchdog_command(team).startswith('command="%(here)s/../.venv/bin/python" -m ')
    assert interpreter.program_python(project(tmp_path, python="/opt/py/bin/python")) == \
        "/opt/py/bin/python"


def test_the_running_interpreter_is_never_a_problem(tmp_path):
    assert interpreter.problem(project(tmp_path)) is None


def test_a_missing_python_is_one_line_naming_the_key_and_the_path(tmp_path):
    team = project(tmp_path, python=".venv/bin/python")
    message = interpreter.problem(team)
    assert message.splitlines() == [message]
    assert f"team.python: {tmp_path / '.venv/bin/python'} does not exist" in message
    assert str(interpreter.running_python()) in message  # and what removing it would use


def test_gen_config_and_start_refuse_a_python_that_cannot_run_the_programs(tmp_path):
    team = project(tmp_path, python=".venv/bin/python")
    for args in (["gen-config"], ["gen-config", "--check"], ["start"]):
        result = CliRunner().invoke(main, ["--team", str(team.path), *args])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "team.python: " in result.output
    assert not team.conf_file.exists()


def doctor(team) -> dict[str, str]:
    result = CliRunner().invoke(main, ["--team", str(team.path), "doctor"])
    assert "Traceback" not in result.output
    return {line[5:].split(":", 1)[0]: line for line in result.output.splitlines()}


def test_doctor_names_a_bad_team_python(tmp_path):
    team = project(tmp_path, python="venv/bin/python")
    line = doctor(team)["interpreter"]
    assert line.startswith("FAIL interpreter: ") and "team.python: " in line


@pytest.mark.parametrize("name", ["python3", "python3.11"])
def test_running_python_prefers_the_plain_name_beside_it(tmp_path, monkeypatch, name):
    real = tmp_path / "bin" / name
    real.parent.mkdir()
    real.symlink_to(os.path.realpath(sys.executable))
    (tmp_path / "bin" / "python").symlink_to(name)
    monkeypatch.setattr(sys, "executable", str(real))
    assert interpreter.running_python() == tmp_path / "bin" / "python"
    (tmp_path / "bin" / "python").unlink()
    (tmp_path / "bin" / "python").symlink_to("/bin/sh")  # another program: keep the real name
    assert interpreter.running_python() == real
