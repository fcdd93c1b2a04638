"""``coffee-team init``: the examples shipped in the package written into a project, its
config, the .gitignore block, the refusal to overwrite; ``--version``. (What needs git or a
command run: tests/integration/test_init_live.py.)"""
from __future__ import annotations

import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from coffee_team import layout
from coffee_team.cli import main
from coffee_team.cli.init import GITIGNORE_MARK, RUNTIME, example_dir
from coffee_team.team.interpreter import running_python
from coffee_team.team import load_team


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


def test_init_writes_a_starter_team_its_config_and_says_what_to_commit(project):
    (project / ".gitignore").write_text("*.pyc")  # the user's own, without a final newline
    result = init()
    assert result.exit_code == 0, result.output
    team = load_team(project / "data" / "team.yaml")
    assert team.names == ("writer", "reviewer")
    assert team.settings.python is None  # the programs run the interpreter coffee-team runs
    python = str(running_python())       # from (outside this project: absolute)
    assert [a.command for a in team.agents] == [(python, "data/agents/writer.py"),
                                                (python, "data/agents/reviewer.py")]
    assert layout.diff_config(team).clean
    ignore = (project / ".gitignore").read_text()
    assert ignore.startswith("*.pyc\n\n" + GITIGNORE_MARK)
    assert all(line in ignore.splitlines() for line in RUNTIME)
    assert "/supervisord.conf.d/" in ignore.splitlines()  # it names this machine's interpreter
    lines = result.output.splitlines()
    assert "commit: git add data/team.yaml data/agents/ .gitignore" in lines
    then = lines[lines.index("then:") + 1:]
    assert [line.split()[-1] for line in then[:1]] == ["start"]
    assert " send - draft --content " in then[1]


def test_inside_the_project_the_interpreter_is_relative_and_the_config_committed(
        project, monkeypatch):
    venv = project / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setattr(sys, "executable", str(venv / "python"))
    result = init()
    assert result.exit_code == 0, result.output
    text = (project / "data" / "team.yaml").read_text()
    assert "command: [.venv/bin/python, data/agents/writer.py]" in text
    assert "/supervisord.conf.d/" not in (project / ".gitignore").read_text()
    assert "/.venv/" in (project / ".gitignore").read_text().splitlines()
    assert "commit: git add data/team.yaml data/agents/ .gitignore supervisord.conf.d/" in \
        result.output.splitlines()


def test_init_refuses_to_overwrite_in_one_line_unless_forced(project):
    assert init().exit_code == 0
    (project / "data" / "team.yaml").write_text("# mine\n")
    result = init("--example", "demo")
    assert result.exit_code == 1
    assert result.output == ("Error: data/team.yaml: already exists; `coffee-team init "
                             "--force` overwrites it\n")
    assert (project / "data" / "team.yaml").read_text() == "# mine\n"
    result = init()  # the starter's scripts are there too
    assert result.output == ("Error: data/team.yaml, data/agents/reviewer.py, "
                             "data/agents/writer.py: already exist; `coffee-team init --force` "
                             "overwrites them\n")
    forced = init("--example", "demo", "--force")
    assert forced.exit_code == 0, forced.output
    assert len(load_team(project / "data" / "team.yaml").agents) == 6
    assert (project / ".gitignore").read_text().count(GITIGNORE_MARK) == 1  # not twice


def test_the_demo_example_is_the_checkouts_demo_team():
    """data/team.yaml of the checkout and the packaged demo must not drift apart: the same
    agents and settings, but the checkout's interpreter."""
    shipped = load_team(example_dir("demo") / "team.yaml")
    checkout = load_team(REPO / "data" / "team.yaml")
    assert shipped.agents == checkout.agents
    assert shipped.settings.python is None and checkout.settings.python == ".venv/bin/python"
    assert {**vars(shipped.settings), "python": None} == {**vars(checkout.settings),
                                                          "python": None}


def test_the_checkouts_examples_are_the_packages():
    assert (REPO / "examples").resolve() == (REPO / "coffee_team" / "examples").resolve()


def test_every_example_file_is_package_data():
    import tomllib
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["coffee_team"]
    base = REPO / "coffee_team"
    files = [p for p in (base / "examples").rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert any(path.match(str(base / pattern)) for pattern in patterns), path


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"coffee-team, version {metadata.version('coffee-team')}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", metadata.version("coffee-team"))


def test_another_team_path_is_in_the_next_commands(project):
    result = CliRunner().invoke(main, ["--team", "ops/team/team.yaml", "init"])
    assert result.exit_code == 0, result.output
    assert load_team(project / "ops" / "team" / "team.yaml").names == ("writer", "reviewer")
    assert (project / "ops" / "supervisord.conf.d" / "supervisord.conf").exists()
    assert result.output.splitlines()[-2].endswith(" --team ops/team/team.yaml start")


def test_init_with_mcp_gives_claude_code_the_server_and_the_orchestrator(project):
    result = init("--mcp")
    assert result.exit_code == 0, result.output
    import json
    entry = json.loads((project / ".mcp.json").read_text())["mcpServers"]["coffee"]
    assert entry["args"][:2] == ["-m", "coffee_team.mcpserver"]
    assert (project / ".claude" / "agents" / "orchestrator.md").read_text().startswith(
        "---\nname: orchestrator\n")
    assert "commit: git add data/team.yaml data/agents/ .gitignore .mcp.json .claude" in \
        result.output.splitlines()


def test_init_makes_the_database_only_where_none_ever_was(project):
    result = init()
    assert result.exit_code == 0, result.output
    db = project / "data" / "orchestrator.db"
    assert "made data/orchestrator.db (empty)" in result.output and db.exists()
    db.rename(project / "data" / "moved.db")  # one was there: init --force makes none
    result = init("--force")
    assert result.exit_code == 0, result.output
    assert not db.exists() and "note: " in result.output and "shows one was there" in result.output
