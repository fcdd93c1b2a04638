"""Setting coffee-team's MCP server up: ``coffee-team mcp`` without the SDK (one line naming the
extra), ``mcp install`` (the project's .mcp.json and the orchestrator subagent, in the spec's
form, using the server's tools), and a team whose calls a person approves refused when the
SDK is missing. No process is started: the command line runs in-process (CliRunner)."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from coffee_team import extras
from coffee_team.cli import main
from coffee_team.errors import ActionRefused
from coffee_team.mcpserver import main as server_main
from coffee_team.mcpserver.tools import PERSON_TOOLS
from coffee_team.ops import claude
from coffee_team.ops.lifecycle import runnable
from tests.fast_team import temp_root, write_team


@pytest.fixture
def team():
    with temp_root() as root:
        yield write_team(root, {"dev": {"llm": {"command": ["claude", "-p"]}},
                                "ops": {"handler": "m:f"}})


@pytest.fixture
def no_sdk(monkeypatch):
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module != "mcp" and real(module))


def cli(team, *args):
    return CliRunner().invoke(main, ["--team", str(team.path), *args], catch_exceptions=False)


def test_without_the_sdk_mcp_says_which_extra_in_one_line(team, no_sdk, capsys):
    result = cli(team, "mcp")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: the MCP server needs the MCP SDK: "
                                     "pip install 'coffee-team[mcp]'")
    assert server_main.main(["--team", str(team.path)]) == 1
    assert capsys.readouterr().err.strip() == ("coffee-team mcp: the MCP server needs the MCP "
                                               "SDK: pip install 'coffee-team[mcp]'")


def test_without_the_sdk_a_team_whose_calls_a_person_approves_is_refused(team, no_sdk):
    with pytest.raises(ActionRefused) as info:
        runnable(team)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    assert str(info.value) == (f"{team.path}: agents.dev: a person approving its tool calls "
                               f"(auto_approve: false; or set it to true) needs the MCP SDK: "
                               f"pip install 'coffee-team[mcp]'")
    result = cli(team, "gen-config")
    assert result.exit_code == 2 and "pip install 'coffee-team[mcp]'" in result.output


def test_with_the_sdk_the_same_team_runs(team):
    assert runnable(team) is team


def test_install_adds_the_server_and_keeps_the_projects_other_servers(team):
    config = team.root / ".mcp.json"
    config.write_text(json.dumps({"mcpServers": {"github": {"command": "gh-mcp"}},
                                  "other": 1}))
    result = cli(team, "mcp", "install")
    assert result.exit_code == 0, result.output
    document = json.loads(config.read_text())
    assert document["other"] == 1 and document["mcpServers"]["github"] == {"command": "gh-mcp"}
    coffee = document["mcpServers"]["coffee"]
    assert coffee["args"] == ["-m", "coffee_team.mcpserver", "--team", str(team.path.resolve())]
    agent = team.root / ".claude" / "agents" / "orchestrator.md"
    assert f"wrote {agent}" in result.output
    agent.write_text("my own")
    again = cli(team, "mcp", "install")
    assert f"kept {agent}" in again.output and agent.read_text() == "my own"
    cli(team, "mcp", "install", "--force")
    assert agent.read_text() == claude.ORCHESTRATOR.read_text()


def test_install_refuses_a_mcp_json_that_is_no_json(team):
    (team.root / ".mcp.json").write_text("{oops")
    result = cli(team, "mcp", "install")
    assert result.exit_code == 2 and "not a JSON document" in result.output


def test_the_orchestrator_is_the_specs_subagent_form_using_every_tool():
    text = claude.ORCHESTRATOR.read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert set(meta) == {"name", "description", "tools", "model"} and meta["name"] == "orchestrator"
    tools = [t.strip() for t in meta["tools"].split(",")]
    assert {t for t in tools if t.startswith("mcp__")} == {f"mcp__coffee__{t}"
                                                           for t in PERSON_TOOLS}
    assert "Why did code_developer crash?" in body and "Start only architect and " \
        "code_developer" in body
