"""``coffee-team init`` with processes: llm-team's role files in a git repository (and
outside one), the starter's scripts run as an agent runs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coffee_team.cli import main
from coffee_team.cli.init import example_dir
from coffee_team.handlers import CommandRunner, HandlerContext
from coffee_team.llm.workspace import team_problems
from coffee_team.team import load_team

pytestmark = pytest.mark.slow


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("COFFEE_TEAM", raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


def init(*args: str):
    return CliRunner().invoke(main, ["init", *args])


def test_llm_team_writes_its_role_files_where_its_team_file_finds_them(project):
    subprocess.run(["git", "init", "-q"], check=True)
    result = init("--example", "llm-team")
    assert result.exit_code == 0, result.output
    team = load_team(project / "data" / "team.yaml")
    assert [a.llm.system_prompt_file for a in team.agents] == [
        f"data/agents/{a.name}.md" for a in team.agents]
    assert team_problems(team) == []
    assert (project / "data" / "agents" / "architect.md").read_text() == \
        (example_dir("llm-team") / "agents" / "architect.md").read_text()
    assert "commit: git add data/team.yaml data/agents/ .gitignore" in result.output


def test_llm_team_outside_a_git_repository_says_what_to_do_next(project):
    result = init("--example", "llm-team")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 + result.output.count("wrote ") + \
        result.output.count("added ")
    last = result.output.splitlines()[-1]
    assert last.startswith("Error: ") and "git" in last
    assert last.endswith("; then run `coffee-team gen-config`")


@pytest.mark.parametrize("kind, content, result", [
    ("draft", {"text": " hello "}, {"draft": "Hello.", "send": [
        {"recipient": None, "type": "review", "content": {"draft": "Hello."}}]}),
    ("periodic", None, None),
])
def test_the_starter_scripts_keep_the_command_contract(kind, content, result):
    script = example_dir("starter") / "agents" / "writer.py"
    runner = CommandRunner((sys.executable, str(script)), cwd=str(REPO), sink=_Sink())
    task = {"id": 1, "sender": "cli", "recipient": "writer", "type": kind, "content": content,
            "priority": 5, "attempts": 1}
    assert runner(task, HandlerContext(agent="writer", options={})) == result


class _Sink:
    def write(self, data: bytes) -> None:
        pass
