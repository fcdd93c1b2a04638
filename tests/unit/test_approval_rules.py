"""Which tool calls wait for a person (llm/permissions.py, pure) and the team file's
``approvals:`` and ``approve_before:`` keys."""
from __future__ import annotations

import pytest

from coffee_team.errors import TeamError
from coffee_team.llm.permissions import (ALLOW, ASK, RuleError, command_parts, decide,
                                         parse_rule, summary)
from coffee_team.team import parse_team

WORKSPACE, HOME = "/srv/project/data/worktrees/dev", "/home/ana"


def verdict(tool: str, tool_input: dict, ask=(), allow=()) -> str:
    return decide(tool, tool_input, [parse_rule(r) for r in ask], [parse_rule(r) for r in allow],
                  WORKSPACE, HOME).verdict


# --- the defaults: shell commands and writes outside the workspace ask ----------------------

@pytest.mark.parametrize("tool, tool_input, expected", [
    ("Bash", {"command": "pytest -q"}, ASK),
    ("Write", {"file_path": f"{WORKSPACE}/src/cli.py", "content": "x"}, ALLOW),
    ("Edit", {"file_path": "src/cli.py"}, ALLOW),                      # relative: the workspace
    ("MultiEdit", {"file_path": f"{WORKSPACE}/a/b/c.py"}, ALLOW),
    ("NotebookEdit", {"notebook_path": f"{WORKSPACE}/n.ipynb"}, ALLOW),
    ("Write", {"file_path": "/etc/hosts"}, ASK),
    ("Edit", {"file_path": f"{WORKSPACE}/../main/src/cli.py"}, ASK),   # .. leaves it
    ("Write", {"file_path": WORKSPACE + "-other/x"}, ASK),             # a sibling, not inside
    ("WebFetch", {"url": "https://example.com"}, ASK),                 # Claude asked: a person
    ("mcp__github__create_pr", {}, ASK),
])
def test_the_defaults(tool, tool_input, expected):
    assert verdict(tool, tool_input) == expected


# --- Claude Code's rule syntax -------------------------------------------------------------

@pytest.mark.parametrize("rule, command, hit", [
    ("Bash(git push:*)", "git push origin main", True),
    ("Bash(git push:*)", "git push", True),
    ("Bash(git push:*)", "git pushy", False),                # a prefix ends at a word
    ("Bash(git push:*)", "cd sub && git push -f", True),     # compound: part by part
    ("Bash(git push:*)", "git status; git push", True),
    ("Bash(git push:*)", "make | git push", True),
    ("Bash(git push:*)", "GIT_SSH=x git push", True),        # leading assignments are no command
    ("Bash(git push:*)", "git log", False),
    ("Bash(make)", "make", True),
    ("Bash(make)", "make install", False),                   # exact without :*
    ("Bash(git * main)", "git push origin main", True),
    ("Bash(git * main)", "git push origin dev", False),
    ("Bash", "anything at all", True),
])
def test_bash_rules(rule, command, hit):
    assert (verdict("Bash", {"command": command}, ask=[rule], allow=["Bash"]) == ASK) == hit


@pytest.mark.parametrize("rule, path, hit", [
    ("Edit(docs/**)", f"{WORKSPACE}/docs/a/b.md", True),
    ("Edit(docs/**)", f"{WORKSPACE}/src/docs/b.md", False),   # anchored at the workspace
    ("Edit(docs)", f"{WORKSPACE}/src/docs/b.md", True),       # a bare name: any depth
    ("Edit(/docs)", f"{WORKSPACE}/src/docs/b.md", False),     # /x: from the workspace root
    ("Edit(/docs)", f"{WORKSPACE}/docs/b.md", True),
    ("Edit(*.env)", f"{WORKSPACE}/deep/er/.x.env", True),
    ("Edit(*.env)", f"{WORKSPACE}/app.envx", False),
    ("Edit(src/*.py)", f"{WORKSPACE}/src/a.py", True),
    ("Edit(src/*.py)", f"{WORKSPACE}/src/sub/a.py", False),   # * stays in one directory
    ("Edit(//etc/**)", "/etc/hosts", True),
    ("Edit(~/.ssh/**)", f"{HOME}/.ssh/config", True),
    ("Edit(~/.ssh/**)", "/root/.ssh/config", False),
])
def test_path_rules_are_gitignore_style(rule, path, hit):
    # Read: no default lets it run anywhere, so only the rule can
    assert (verdict("Read", {"file_path": path}, allow=[rule.replace("Edit", "Read")])
            == ALLOW) == hit


def test_ask_wins_over_allow_and_allow_over_the_defaults():
    assert verdict("Bash", {"command": "git push"}, ask=["Bash(git push:*)"], allow=["Bash"]) == ASK
    assert verdict("Bash", {"command": "pytest -q"}, allow=["Bash(pytest:*)"]) == ALLOW
    assert verdict("Write", {"file_path": "/etc/x"}, allow=["Write(//etc/**)"]) == ALLOW
    # an ask rule catches even a write the workspace would allow
    assert verdict("Write", {"file_path": "src/.env"}, ask=["Write(*.env)"]) == ASK
    assert decide("Bash", {"command": "ls"}, [], [parse_rule("Bash(ls)")], WORKSPACE,
                  HOME).why == "allow rule Bash(ls)"


@pytest.mark.parametrize("rule, tool, tool_input, hit", [
    ("WebFetch(domain:example.com)", "WebFetch", {"url": "https://docs.example.com/a"}, True),
    ("WebFetch(domain:example.com)", "WebFetch", {"url": "https://example.com.evil.io/"}, False),
    ("mcp__github", "mcp__github__create_pr", {}, True),
    ("mcp__github", "mcp__githubx__create_pr", {}, False),
    ("mcp__github__*", "mcp__github__get_issue", {}, True),
    ("mcp__github__get_issue", "mcp__github__create_pr", {}, False),
    ("WebSearch(*coffee*)", "WebSearch", {"query": "best coffee beans"}, True),
    ("Write", "Edit", {"file_path": "/etc/x"}, False),       # a rule names one tool
])
def test_other_rules(rule, tool, tool_input, hit):
    assert (verdict(tool, tool_input, allow=[rule]) == ALLOW) == hit


@pytest.mark.parametrize("text", ["", "Bash(", "Bash()", "Bash git", "1tool", "mcp__x(y)", 7,
                                  None])
def test_what_is_not_a_rule_is_refused(text):
    with pytest.raises(RuleError):
        parse_rule(text)


def test_command_parts_and_summaries():
    assert command_parts("A=1 B=2 make && make install ; echo done | tee x\nls") == [
        "make", "make install", "echo done", "tee x", "ls"]
    assert summary("Bash", {"command": "git  push\n origin"}) == "Bash: git push origin"
    assert summary("Write", {"file_path": "/etc/hosts", "content": "x" * 10}) == "Write /etc/hosts"
    assert summary("Task", {}) == "Task"
    assert len(summary("Bash", {"command": "x" * 500})) == 200


# --- the team file --------------------------------------------------------------------------

CLAUDE = {"command": ["claude", "-p", "--output-format", "json"]}


def agent(**keys) -> dict:
    return {"agents": {"dev": keys}}


def one_line_error(document) -> str:
    with pytest.raises(TeamError) as info:
        parse_team(document, "team.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("team.yaml: ")
    return message


def test_a_claude_agent_that_does_not_auto_approve_asks_with_the_defaults():
    spec = parse_team(agent(llm=CLAUDE)).agent("dev")
    assert spec.auto_approve is False and spec.approvals is not None
    assert (spec.approvals.ask, spec.approvals.allow, spec.approvals.timeout,
            spec.approvals.on_timeout) == ((), (), 3600.0, "deny")


def test_an_agents_own_rules_timeout_and_on_timeout():
    spec = parse_team(agent(llm=CLAUDE, approvals={
        "ask": ["Bash(git push:*)", "Write"], "allow": ["Bash"], "timeout": "30m",
        "on_timeout": "allow"})).agent("dev")
    assert spec.approvals.ask_rules[0].pattern == "git push:*"
    assert (spec.approvals.timeout, spec.approvals.on_timeout) == (1800.0, "allow")
    assert parse_team(agent(llm=CLAUDE, approvals={"timeout": 90})).agent(
        "dev").approvals.timeout == 90.0


@pytest.mark.parametrize("keys", [
    {"llm": CLAUDE, "auto_approve": True},
    {"llm": {**CLAUDE, "preset": "text"}},
    {"llm": {"command": ["claude", "-p", "--dangerously-skip-permissions"]}},
    {"llm": {"command": ["claude", "-p", "--permission-prompt-tool", "mcp__mine__ok"]}},
    {"handler": "m:f"},
])
def test_nothing_asks_a_person_without_a_claude_cli_that_would(keys):
    assert parse_team(agent(**keys)).agent("dev").approvals is None


@pytest.mark.parametrize("keys, message", [
    ({"llm": CLAUDE, "approvals": {"ask": ["Bash("]}}, "agents.dev.approvals.ask: expected a "
                                                       "rule such as"),
    ({"llm": CLAUDE, "approvals": {"ask": "Bash"}}, "agents.dev.approvals.ask: expected a list"),
    ({"llm": CLAUDE, "approvals": {"timeout": "soon"}}, "agents.dev.approvals.timeout: expected a"
                                                        " duration"),
    ({"llm": CLAUDE, "approvals": {"timeout": 0}}, "agents.dev.approvals.timeout"),
    ({"llm": CLAUDE, "approvals": {"on_timeout": "maybe"}}, "agents.dev.approvals.on_timeout: "
                                                            "expected one of deny, allow"),
    ({"llm": CLAUDE, "approvals": {"colour": 1}}, "agents.dev.approvals.colour: unknown key"),
    ({"llm": CLAUDE, "auto_approve": True, "approvals": {}},
     "agents.dev.approvals: nothing would ask a person: auto_approve is true"),
    ({"llm": {**CLAUDE, "preset": "json", "fields": {"result": "r"}}, "approvals": {}},
     "preset json cannot ask a person"),
    ({"handler": "m:f", "approvals": {}}, "agents.dev.approvals: only an llm agent has one"),
    ({"handler": "m:f", "approve_before": "deploy"}, "agents.dev.approve_before: expected a list"),
])
def test_bad_approval_settings_are_one_line_naming_the_key(keys, message):
    assert message in one_line_error(agent(**keys))


def test_approve_before_names_task_types_of_any_agent():
    team = parse_team({"agents": {"ops": {"command": ["deploy.sh"],
                                          "approve_before": ["deploy", "release"]},
                                  "dev": {"llm": CLAUDE, "approve_before": ["merge"]}}})
    assert team.agent("ops").approve_before == ("deploy", "release")
    assert team.queue_options()["approve_before"] == {"ops": ("deploy", "release"),
                                                      "dev": ("merge",)}
