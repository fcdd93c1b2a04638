"""Task content can never become a shell command: external handlers get it as JSON on stdin,
and their argv comes from the team file only."""
from __future__ import annotations

import json
import stat
import sys

import pytest

from coffee_team import layout
from coffee_team.errors import HandlerError
from coffee_team.handlers import CommandRunner, HandlerContext, Interrupted, time_limit
from tests.harness import Project, demo_agents

ECHO = [sys.executable, "-c",
        "import json, sys; task = json.load(sys.stdin); print(json.dumps({'echo': task['content']}))"]


def hostile_strings(marker):
    return [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", f"| touch {marker}",
            f"&& touch {marker}", f"> {marker}", f"'; touch {marker}; '", f"\"; touch {marker}\"",
            f"\n touch {marker}", "%(here)s %%s {0} ${HOME}", "\x00 nul", "ünïcödé ☕"]


@pytest.mark.slow  # starts a process
def test_shell_syntax_in_content_reaches_the_command_as_data(tmp_path):
    marker = tmp_path / "pwned"
    runner = CommandRunner(tuple(ECHO), cwd=str(tmp_path))
    ctx = HandlerContext(agent="a", options={})
    for text in hostile_strings(marker):
        content = {"text": text, "list": [text], "nested": {text: text}}
        task = {"id": 1, "type": "t", "sender": text, "recipient": "a", "content": content}
        assert runner(task, ctx) == {"echo": content}
    assert not marker.exists()


@pytest.mark.slow  # starts a process
def test_command_failures_and_timeouts_are_task_errors(tmp_path):
    ctx = HandlerContext(agent="a", options={})
    failing = CommandRunner((sys.executable, "-c", "import sys; sys.exit('boom')"))
    with pytest.raises(HandlerError, match="exited with 1: boom"):
        failing({"id": 1}, ctx)
    garbage = CommandRunner((sys.executable, "-c", "print('not json')"))
    with pytest.raises(HandlerError, match="printed no JSON result"):
        garbage({"id": 1}, ctx)
    slow = CommandRunner((sys.executable, "-c", "import time, subprocess, sys; "
                          "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                          "time.sleep(60)"))
    with pytest.raises(Interrupted, match="timed out"):
        with time_limit(0.5):
            slow({"id": 1}, ctx)
    assert slow.current is None  # the whole process group was killed and reaped


def test_data_directories_are_private(tmp_path):
    project = Project(tmp_path)
    project.write_team(demo_agents())
    team = project.team
    layout.ensure_data_dirs(team)
    for directory in (team.data_dir, team.run_dir, team.log_dir, team.status_dir):
        mode = stat.S_IMODE(directory.stat().st_mode)
        assert mode == 0o700, f"{directory} is {oct(mode)}"
    path = team.status_dir / "x.json"
    layout.atomic_write_private(path, json.dumps({}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unloadable_handler_is_one_line_not_a_traceback(tmp_path, capsys):
    from coffee_team.agent import runtime as agent
    project = Project(tmp_path)
    agents = demo_agents()
    agents["architect"]["handler"] = "no_such_module:handle"
    project.write_team(agents)
    code = agent.main(str(project.team_file), "architect")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "agents.architect.handler: cannot load handler 'no_such_module:handle'" in err[0]
