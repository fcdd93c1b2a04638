"""The interpreter check and doctor's program check when they have to ask another
interpreter: one without coffee_team, one that lacks a module the config runs."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from coffee_team import layout
from coffee_team.team import interpreter
from coffee_team.cli import main
from coffee_team.team import parse_team

pytestmark = pytest.mark.slow


def project(root: Path, **settings):
    path = root / "data" / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    team = {"team": settings, "agents": {"a": {"handler": "coffee_team.agent.demo:handle"}}}
    import yaml
    path.write_text(yaml.safe_dump(team))
    return parse_team(team, str(path), path)


def fake_python(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_a_python_without_coffee_team_is_one_line(tmp_path):
    fake_python(tmp_path / "py" / "python", "echo \"ModuleNotFoundError: No module named "
                                              "'coffee_team'\" >&2; exit 1\n")
    team = project(tmp_path, python=str(tmp_path / "py" / "python"))
    message = interpreter.problem(team)
    assert message.splitlines() == [message]
    assert "cannot import coffee_team (ModuleNotFoundError: No module named 'coffee_team')" \
        in message


def doctor(team) -> dict[str, str]:
    result = CliRunner().invoke(main, ["--team", str(team.path), "doctor"])
    assert "Traceback" not in result.output
    return {line[5:].split(":", 1)[0]: line for line in result.output.splitlines()}


def test_doctor_checks_the_interpreter_and_every_generated_command(tmp_path):
    team = project(tmp_path)
    layout.ensure_data_dirs(team)
    layout.write_config(team)
    checks = doctor(team)
    assert checks["interpreter"].startswith("ok   interpreter: ")
    assert checks["programs"] == "ok   programs: 2 commands exist and their modules import"
    # the generated config names an interpreter that has gone (a tool venv removed)
    conf = team.conf_file.read_text()
    exe = str(interpreter.running_python())
    gone = tmp_path / "gone" / "python"
    team.conf_file.write_text(conf.replace(f'"{exe}"', f'"{gone}"'))
    line = doctor(team)["programs"]
    assert line == (f"FAIL programs: watchdog: {gone} does not exist or is not executable; "
                    f"check team.python and run `coffee-team gen-config`")
    # ... or one that lacks the package
    fake_python(gone, 'for m in "$@"; do case $m in coffee_team*) echo $m;; esac; done\n')
    line = doctor(team)["programs"]
    assert line.startswith(f"FAIL programs: watchdog: {gone} cannot import coffee_team.watchdog")
