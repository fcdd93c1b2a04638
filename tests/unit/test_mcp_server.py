"""coffee-team's MCP server driven by the MCP SDK's own client, in-process (no process is
started; tests/integration/test_approvals_live.py drives it over stdio from a running team):
which tools a person and a running agent get, that they do what the command line does on the
same queue, that a person's mistake is a one-line tool error, and the permission prompt."""
from __future__ import annotations

import json
import threading
import time

import anyio
import pytest
from mcp import Client

from coffee_team.llm import mcpconfig
from coffee_team.mcpserver import approve
from coffee_team.mcpserver.server import build
from coffee_team.mcpserver.tools import AGENT_TOOLS, PERSON_TOOLS, Desk
from tests.fast_team import temp_root, write_team

CLAUDE = {"command": ["claude", "-p"]}


@pytest.fixture
def team():
    with temp_root() as root:
        yield write_team(root, {
            "dev": {"llm": CLAUDE, "approvals": {"ask": ["Bash(git push:*)"], "allow": ["Bash"],
                                                 "timeout": 1}},
            "free": {"llm": CLAUDE, "auto_approve": True},
            "ops": {"handler": "m:f", "handles": ["report"], "approve_before": ["deploy"]},
        })


def session(desk: Desk, body, workspace: str | None = None):
    """Run ``body(client)`` against the desk's server; the desk is closed afterwards."""
    async def run():
        async with Client(build(desk, workspace)) as client:
            return await body(client)
    try:
        return anyio.run(run)
    finally:
        desk.close()


async def call(client, tool: str, **arguments):
    result = await client.call_tool(tool, arguments)
    text = "".join(block.text for block in result.content)
    if result.is_error:
        return "error", text
    try:
        return "ok", json.loads(text)
    except ValueError:
        return "ok", text


def test_a_person_gets_every_tool_and_a_running_agent_reads_sends_and_asks(team):
    async def names(client):
        return sorted(t.name for t in (await client.list_tools()).tools)
    assert session(Desk(team), names) == sorted(PERSON_TOOLS)
    assert session(Desk(team, agent="dev", task_id=3), names) == sorted((*AGENT_TOOLS,
                                                                         "approve"))
    assert "approval_decide" not in AGENT_TOOLS and "start_agents" not in AGENT_TOOLS


def test_the_tools_do_what_the_command_line_does(team):
    async def body(client):
        sent = await call(client, "send_task", recipient="ops", type="deploy",
                          content={"to": "prod"})
        [held] = sent[1]["ids"]
        shown = await call(client, "task_show", task_id=held)
        listed = await call(client, "approvals_list")
        [request] = listed[1]["approvals"]
        decided = await call(client, "approval_decide", approval_id=request["id"],
                             decision="deny", reason="frozen")
        again = await call(client, "approval_decide", approval_id=request["id"],
                           decision="approve")
        tasks = await call(client, "task_list", status="cancelled")
        retried = await call(client, "task_retry", task_id=held)
        paused = await call(client, "pause_agent", agent="ops", reason="maintenance")
        resumed = await call(client, "resume_agent", agent="ops")
        costs = await call(client, "costs", by="day", since="24h")
        return held, shown, request, decided, again, tasks, retried, paused, resumed, costs
    held, shown, request, decided, again, tasks, retried, paused, resumed, costs = session(
        Desk(team, person="ana"), body)
    assert shown == ("ok", shown[1]) and shown[1]["status"] == "awaiting_approval"
    assert shown[1]["sender"] == "mcp" and shown[1]["content"] == {"to": "prod"}
    assert (request["kind"], request["task_id"]) == ("task", held)
    assert decided[1]["status"] == "denied" and decided[1]["decided_by"] == "ana (mcp)"
    assert again[0] == "error" and "already denied by ana (mcp)" in again[1]
    assert [t["id"] for t in tasks[1]["tasks"]] == [held]
    assert retried[1] == {"id": held, "status": "pending", "was": "cancelled"}
    assert paused[1]["paused"] is True and resumed[1]["was_paused"] is True
    assert costs[1]["by"] == "day" and costs[1]["groups"] == []


@pytest.mark.parametrize("tool, arguments, words", [
    ("task_show", {"task_id": 404}, "no task with id 404"),
    ("task_cancel", {"task_id": 404}, "no task with id 404"),
    ("pause_agent", {"agent": "nobody"}, "unknown agent(s) nobody"),
    ("task_list", {"status": "lost"}, "status: one of waiting, awaiting_approval"),
    ("costs", {"since": "forever"}, "since: expected a duration"),
    ("send_task", {"recipient": "", "type": "nobody_handles_this"}, "nobody_handles_this"),
    ("send_task", {"recipient": "ops", "type": "t", "delay": "soon"}, "delay: expected"),
    ("approval_decide", {"approval_id": 9, "decision": "maybe"}, "decision: approve or deny"),
    ("merges_list", {"state": "lost"}, "state: one of waiting_review, approved"),
    ("approval_decide", {"approval_id": 9, "decision": "approve"}, "no approval with id 9"),
    ("resume_agent", {"agent": "ops", "raise_usd": 5}, "not stopped by a budget"),
    ("stop_agents", {"agents": []}, "name the agents to stop"),
    ("team_status", {}, "supervisord is not running"),
    ("logs_tail", {"agent": "ops"}, "supervisord is not running"),
    ("restart_agent", {"agent": "ops"}, "supervisord is not running"),
])
def test_a_persons_mistake_is_a_one_line_tool_error(team, tool, arguments, words):
    kind, text = session(Desk(team), lambda client: call(client, tool, **arguments))
    assert kind == "error" and words in text and "\n" not in text and "Traceback" not in text


def test_the_merge_queue_is_listed_to_a_person_and_to_a_running_agent(team):
    desk = Desk(team)
    desk.queue.send("cli", "ops", "report")
    [task] = desk.queue.claim("ops")
    _, item_id = desk.queue.request_review(task.id, None, agent="ops", item={
        "author": "ops", "host": "", "branch": "agents/ops", "target": "roadmap",
        "base": "a" * 40, "head": "b" * 40, "task_id": task.id, "reviewer": "dev"},
        review=None)
    desk.queue.decide_review(item_id, False, by="dev", comments="no")
    kind, data = session(desk, lambda client: call(client, "merges_list"))
    assert kind == "ok" and [(m["id"], m["state"], m["reason"]) for m in data["merges"]] == [
        (item_id, "failed", "changes requested by dev: no")]
    agent = Desk(team, agent="dev", task_id=1)
    kind, data = session(agent, lambda client: call(client, "merges_list", state="merged"))
    assert (kind, data) == ("ok", {"merges": []})


def test_the_history_says_why_an_agent_crashed_without_supervisord(team):
    desk = Desk(team)
    desk.queue.record_event("ops", "crash", reason="exit status 1 (expected 0)")
    desk.queue.record_event("ops", "restarted")
    kind, data = session(desk, lambda client: call(client, "agent_history", agent="ops"))
    assert kind == "ok" and data["summary"]["ops"] == {
        "crashes": 1, "restarts": 1, "manual_restarts": 0, "given_up": False,
        "last_crash": "exit status 1 (expected 0)"}
    assert [e["kind"] for e in data["events"]] == ["crash", "restarted"]
    assert data["log_tail"].startswith("(log not available: supervisord is not running")


def test_a_running_agent_sends_as_its_running_task(team):
    desk = Desk(team, agent="dev", task_id=41)
    kind, sent = session(desk, lambda client: call(client, "send_task", recipient="",
                                                   type="report", content=[1, 2]))
    [task_id] = sent["ids"]
    desk = Desk(team)
    task = desk.queue.get_task(task_id)
    desk.close()
    assert (task["sender"], task["recipient"], task["sent_from"], task["content"]) == (
        "dev", "ops", 41, [1, 2])


# --- the permission prompt ----------------------------------------------------------------------

def prompt(desk: Desk, tool: str, tool_input: dict, workspace: str, during=None) -> dict:
    """Ask the approve tool as Claude Code does; ``during`` runs beside the waiting call."""
    if during is not None:
        threading.Thread(target=during, daemon=True).start()
    kind, text = session(desk, lambda client: call(client, "approve", tool_name=tool,
                                                   input=tool_input, tool_use_id="toolu_1"),
                         workspace)
    assert kind == "ok"
    return text


def decide_when_asked(team, approve_it: bool, reason: str = ""):
    def decide():
        desk = Desk(team)
        try:
            while not desk.queue.list_approvals("pending"):
                time.sleep(0.02)
            [row] = desk.queue.list_approvals("pending")
            desk.queue.decide_approval(row["id"], approve_it, "ana", reason)
        finally:
            desk.close()
    return decide


def test_rules_let_calls_run_without_asking(team):
    workspace = str(team.root)
    for tool, tool_input in (("Bash", {"command": "pytest -q"}),            # allow rule
                             ("Write", {"file_path": "src/a.py", "content": "x"})):  # workspace
        assert prompt(Desk(team, agent="dev"), tool, tool_input, workspace) == {
            "behavior": "allow", "updatedInput": tool_input}
    desk = Desk(team)
    assert desk.queue.list_approvals(None) == []  # nobody was asked
    desk.close()


def test_an_asked_call_waits_for_a_person(team):
    started = time.monotonic()
    answer = prompt(Desk(team, agent="dev", task_id=5), "Bash",
                    {"command": "git push origin main"}, str(team.root),
                    decide_when_asked(team, False, "no pushing from here"))
    assert answer["behavior"] == "deny" and "(ana) denied" in answer["message"]
    assert "no pushing from here" in answer["message"] and time.monotonic() - started < 1.0
    desk = Desk(team)
    [row] = desk.queue.list_approvals(None)
    desk.close()
    assert (row["task_id"], row["request"]["tool_use_id"], row["request"]["why"]) == (
        5, "toolu_1", "ask rule Bash(git push:*)")

    answer = prompt(Desk(team, agent="dev"), "Write", {"file_path": "/etc/hosts"},
                    str(team.root), decide_when_asked(team, True))
    assert answer == {"behavior": "allow", "updatedInput": {"file_path": "/etc/hosts"}}


def test_no_answer_in_time_denies(team):
    answer = prompt(Desk(team, agent="dev"), "Bash", {"command": "git push"}, str(team.root))
    assert answer["behavior"] == "deny" and "No person answered" in answer["message"]
    desk = Desk(team)
    [row] = desk.queue.list_approvals(None)
    desk.close()
    assert (row["status"], row["decided_by"]) == ("denied", "timeout")


def test_an_agent_that_auto_approves_or_a_person_asks_nobody(team):
    assert prompt(Desk(team, agent="free"), "Bash", {"command": "ls"}, str(team.root)
                  )["behavior"] == "deny"
    kind, _ = session(Desk(team), lambda client: call(client, "approve", tool_name="Bash",
                                                      input={}))
    assert kind == "error"  # a person's desk has no approve tool


def test_a_call_the_cli_gives_up_on_withdraws_its_request(team):
    desk = Desk(team, agent="dev")

    async def give_up():
        with anyio.move_on_after(0.5):
            await approve.ask(desk, "Bash", {"command": "git push"}, None,
                              lambda f, *a, **k: anyio.to_thread.run_sync(lambda: f(*a, **k)),
                              anyio.sleep, str(team.root))
    anyio.run(give_up)
    [row] = desk.queue.list_approvals(None)
    desk.close()
    assert (row["status"], row["decided_by"]) == ("cancelled", "coffee-team")


def test_stored_input_keeps_its_shape_and_cuts_long_text():
    value = {"content": "x" * 5000, "edits": [{"new": "y" * 3000}], "n": 1}
    kept = approve.stored(value)
    assert kept["n"] == 1 and kept["content"].endswith("[3000 more characters]")
    assert len(kept["edits"][0]["new"]) < 2100


def test_the_config_a_run_gets(team):
    path = mcpconfig.write_config(team, "dev", 12, "/work/tree", "00-" + "1" * 32 + "-" +
                                  "2" * 16 + "-01")
    assert path == team.run_dir / "mcp" / "dev.json" and path.stat().st_mode & 0o777 == 0o600
    entry = json.loads(path.read_text())["mcpServers"]["coffee"]
    assert entry["args"] == ["-m", "coffee_team.mcpserver", "--team", str(team.path.resolve())]
    assert entry["env"]["COFFEE_AGENT"] == "dev" and entry["env"]["COFFEE_TASK_ID"] == "12"
    assert entry["env"]["COFFEE_WORKSPACE"] == "/work/tree"
    assert entry["env"]["COFFEE_TRACEPARENT"].startswith("00-111")
    assert mcpconfig.cli_args(path, asks=True) == [
        f"--mcp-config={path}", "--allowedTools=mcp__coffee",
        "--permission-prompt-tool=mcp__coffee__approve"]
    assert mcpconfig.cli_args(path, asks=False)[-1] == "--allowedTools=mcp__coffee"


def test_an_agent_that_restarts_withdraws_what_its_dead_run_asked(team):
    """kill -9 of the agent: its run's request waits for nobody; the next start withdraws it."""
    from coffee_team.llm.runner import LlmRunner
    from coffee_team.queue import MessageQueue
    with MessageQueue.from_team(team) as queue:
        orphan = queue.request_approval("tool", "dev", "Bash: git push", timeout=3600)
        other = queue.request_approval("tool", "free", "Bash: ls", timeout=3600)
        LlmRunner(team, team.agent("dev")).attach(queue, lambda f, *a, **k: f(*a, **k))
        assert queue.approval(orphan)["status"] == "cancelled"
        assert queue.approval(orphan)["reason"] == "the agent restarted"
        assert queue.approval(other)["status"] == "pending"  # another agent's: untouched
