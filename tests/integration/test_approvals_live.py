"""A person approves an llm agent's tool calls, under a real supervisord (one boot for the
module). The agents run the fake Claude Code (tests/fake_llm_cli.py), which speaks the
client side of ``--permission-prompt-tool`` with the MCP SDK's own client
(tests/fake_claude_mcp.py): coffee-team's MCP server, started from the ``--mcp-config``
coffee-team wrote for the run, asks a person, and the answer comes from

- the command line (``coffee-team approve`` / ``deny --reason``),
- the dashboard, in Debian's headless Chromium (playwright),
- the MCP server itself, started from the .mcp.json entry `mcp install` wrote (a person's
  SDK client calling ``approval_decide``),
- nobody: the agent's ``approvals.timeout`` denies;

and a run sends a task through the server mid-run, recorded as sent from its running task.
A command agent's ``approve_before`` task waits ``awaiting_approval`` until a person decides.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import anyio
import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, temporary_project, wait_until
from tests.integration.test_web_live import CHROMIUM, free_port

pytestmark = pytest.mark.slow

FAKE = str(Path(__file__).resolve().parents[1] / "fake_llm_cli.py")
STREAM = ["-p", "--output-format", "stream-json", "--verbose"]
PASSWORD = "approvals-test-password"
DEPLOY = [sys.executable, "-c", "import json, sys; json.load(sys.stdin); print('{\"ok\": 1}')"]


def llm(log: Path, **keys) -> dict:
    return {"check_interval": 3600, **keys,
            "llm": {"command": [sys.executable, FAKE, "--log", str(log), *STREAM]}}


@pytest.fixture(scope="module")
def team():
    with temporary_project() as project:
        log = project.root / "cli.jsonl"
        project.log = log  # type: ignore[attr-defined]
        port = free_port()
        project.write_team({
            "dev": llm(log, handles=["build"], approvals={"ask": ["Bash(git push:*)"],
                                                           "timeout": "10m"}),
            "hasty": llm(log, approvals={"timeout": 2}),
            "reporter": {"handler": "coffee_team.agent.demo:handle", "handles": ["report"],
                         "check_interval": 3600, "options": {"work_seconds": 0.01}},
            "ops": {"command": DEPLOY, "approve_before": ["deploy"], "check_interval": 3600},
        }, web={"port": port, "username": "ops", "password_env": "CT_WEB_PASSWORD"})
        project.base = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        boot_supervisord(project, env={"CT_WEB_PASSWORD": PASSWORD})
        project.wait_states("RUNNING", 60)
        wait_until(lambda: dashboard(project) is not None, 15, 0.1, "the web program")
        yield project


# --- helpers ------------------------------------------------------------------------------

def dashboard(project) -> dict | None:
    token = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(project.base + "/api/dashboard",
                                     headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except OSError:
        return None


def send(project, agent: str, task_type: str, text: str) -> int:
    return int(project.cli("send", agent, task_type, "--content", json.dumps({"text": text}),
                           check=True).stdout)


def queue(project) -> MessageQueue:
    return MessageQueue.from_team(project.team)


def task(project, task_id: int) -> dict:
    with queue(project) as q:
        return q.get_task(task_id)


def waiting(project, task_id: int) -> dict:
    """The request a run of ``task_id`` is waiting on."""
    def find():
        with queue(project) as q:
            rows = [a for a in q.list_approvals("pending") if a["task_id"] == task_id]
        return rows[0] if rows else None
    return wait_until(find, 30, 0.1, f"a request of task {task_id}")


def finished(project, task_id: int) -> dict:
    return wait_until(lambda: (lambda t: t if t["status"] in ("completed", "failed")
                               else None)(task(project, task_id)), 40, 0.1,
                      f"task {task_id} to finish")


def calls_of(project, marker: str) -> list[dict]:
    """The tool calls of the run whose prompt holds ``marker``, as the fake logged them."""
    runs = [json.loads(line) for line in project.log.read_text().splitlines()]
    pids = {r["pid"] for r in runs if marker in r.get("prompt", "")}
    return [c for r in runs if "calls" in r and r["pid"] in pids for c in r["calls"]]


def approval(project, approval_id: int) -> dict:
    with queue(project) as q:
        return q.approval(approval_id)


# --- a tool call asks; the answer comes from the command line --------------------------------

def test_approved_from_the_command_line_within_a_second(team):
    task_id = send(team, "dev", "build", "FAKE-WRITE=notes.md FAKE-PUSH cli-approve")
    request = waiting(team, task_id)
    assert (request["kind"], request["agent"], request["subject"]) == (
        "tool", "dev", "Bash: git push origin main")
    assert request["request"]["why"] == "ask rule Bash(git push:*)"
    assert request["request"]["input"]["command"] == "git push origin main"
    listed = team.cli("approvals", check=True).stdout
    assert f"{request['id']:>5} pending   dev tool: Bash: git push origin main" in listed
    with queue(team) as q:  # one silent notification names it
        [note] = [n for n in q.notifications() if f"approval #{request['id']}" in n["title"]]
    assert note["level"] == "WARNING" and note["sound"] is False

    answer = team.cli("approve", str(request["id"]), "--reason", "reviewed", check=True)
    assert f"approval {request['id']} approved" in answer.stdout
    done = finished(team, task_id)
    assert done["status"] == "completed" and "Bash: allow" in done["result"]["text"]
    calls = {c["tool"]: c for c in calls_of(team, "cli-approve")}
    write, push = calls["Write"], calls["Bash"]
    assert write["behavior"] == "allow"  # in the workspace: nobody was asked
    assert push["behavior"] == "allow" and push["updated_input"]["command"] == "git push origin main"
    decided = approval(team, request["id"])
    assert (decided["status"], decided["reason"]) == ("approved", "reviewed")
    assert push["answered_at"] - decided["decided_at"] < 1.0  # within a second
    everything = json.loads(team.cli("approvals", "--all", "--json", check=True).stdout)
    assert [a["subject"] for a in everything if a["task_id"] == task_id] == [
        "Bash: git push origin main"]  # the write asked nobody


def test_denied_from_the_command_line_the_agent_reads_why_and_goes_on(team):
    task_id = send(team, "dev", "build", "FAKE-PUSH cli-deny")
    request = waiting(team, task_id)
    team.cli("deny", str(request["id"]), "--reason", "not on a Friday", "--by", "ana",
             check=True)
    done = finished(team, task_id)
    assert done["status"] == "completed" and "Bash: deny" in done["result"]["text"]
    [push] = calls_of(team, "cli-deny")
    assert push["behavior"] == "deny"
    assert "(ana) denied" in push["message"] and "not on a Friday" in push["message"]
    again = team.cli("approve", str(request["id"]))
    assert again.returncode == 1 and "already denied by ana" in again.stderr


# --- ... from the MCP server, with the SDK's own client ----------------------------------------

def test_approved_from_the_mcp_server(team):
    """Through the server as a person's Claude Code starts it: the entry `mcp install` wrote
    into .mcp.json (and `coffee-team mcp`, which hands over to the same server)."""
    from mcp import Client, StdioServerParameters
    from tests.harness import BIN
    team.cli("mcp", "install", check=True)
    entry = json.loads((team.root / ".mcp.json").read_text())["mcpServers"]["coffee"]
    task_id = send(team, "dev", "build", "FAKE-PUSH mcp-approve")
    request = waiting(team, task_id)

    async def decide():
        server = StdioServerParameters(command=entry["command"], args=entry["args"])
        async with Client(server) as person:
            listed = json.loads((await person.call_tool("approvals_list", {})).content[0].text)
            assert request["id"] in [a["id"] for a in listed["approvals"]]
            result = await person.call_tool("approval_decide", {
                "approval_id": request["id"], "decision": "approve", "reason": "via mcp"})
            assert not result.is_error, result.content
            return json.loads(result.content[0].text)
    decided = anyio.run(decide)
    assert decided["status"] == "approved" and decided["decided_by"].endswith("(mcp)")
    assert finished(team, task_id)["status"] == "completed"
    [push] = calls_of(team, "mcp-approve")
    assert push["behavior"] == "allow"

    async def through_the_cli():
        server = StdioServerParameters(command=str(BIN / "coffee-team"),
                                       args=["--team", str(team.team_file), "mcp"])
        async with Client(server) as person:
            return json.loads((await person.call_tool("approvals_list", {
                "status": "approved"})).content[0].text)
    assert request["id"] in [a["id"] for a in anyio.run(through_the_cli)["approvals"]]


# --- ... from the dashboard, in a browser --------------------------------------------------------

def test_approved_on_the_dashboard(team):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    task_id = send(team, "dev", "build", "FAKE-PUSH dashboard-approve")
    request = waiting(team, task_id)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            context = browser.new_context(http_credentials={"username": "ops",
                                                            "password": PASSWORD},
                                          viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.goto(team.base + "/")
            row = page.locator(f'#approvals tr[data-approval="{request["id"]}"]')
            row.wait_for(timeout=10_000)
            assert "Bash: git push origin main" in row.inner_text()
            row.locator('button[data-action="approve"]').click()
            page.locator("#message").filter(
                has_text=f"approval {request['id']} approved").wait_for(timeout=10_000)
            row.wait_for(state="detached", timeout=10_000)  # nothing waits any more
        finally:
            browser.close()
    assert finished(team, task_id)["status"] == "completed"
    assert approval(team, request["id"])["decided_by"] == "ops"  # the signed-in user
    [push] = calls_of(team, "dashboard-approve")
    assert push["behavior"] == "allow"


# --- ... from nobody ----------------------------------------------------------------------------

def test_no_answer_within_the_timeout_denies_and_the_task_goes_on(team):
    task_id = send(team, "hasty", "job", "FAKE-PUSH nobody-answers")
    request = waiting(team, task_id)
    done = finished(team, task_id)
    assert done["status"] == "completed" and "Bash: deny" in done["result"]["text"]
    [push] = calls_of(team, "nobody-answers")
    assert push["behavior"] == "deny" and "No person answered" in push["message"]
    assert 1.5 < push["answered_at"] - push["asked_at"] < 8
    decided = approval(team, request["id"])
    assert (decided["status"], decided["decided_by"]) == ("denied", "timeout")


# --- a run sends a task mid-run, and a run that ends withdraws its request -------------------

def test_a_run_sends_a_task_mid_run_as_its_running_task(team):
    task_id = send(team, "dev", "build", "FAKE-MCP-SEND=report mid-run")
    finished(team, task_id)
    [call] = calls_of(team, "mid-run")
    assert call["behavior"] == "allow"  # --allowedTools=mcp__coffee: nobody was asked
    [sent] = json.loads(call["result"])["ids"]
    child = finished(team, sent)
    assert (child["type"], child["recipient"], child["sender"], child["sent_from"]) == (
        "report", "reporter", "dev", task_id)
    assert child["content"] == {"from": "a run"}
    assert f"(sent from task {task_id})" in team.cli("task", "show", str(sent)).stdout


def test_a_cancelled_run_withdraws_what_it_asked(team):
    task_id = send(team, "dev", "build", "FAKE-PUSH cancelled-run")
    request = waiting(team, task_id)
    team.cli("task", "cancel", str(task_id), check=True)
    withdrawn = wait_until(lambda: (lambda a: a if a["status"] != "pending" else None)(
        approval(team, request["id"])), 30, 0.1, "the request withdrawn")
    assert withdrawn["status"] == "cancelled" and withdrawn["decided_by"] == "coffee-team"


# --- approve_before: a command agent's task waits for a person ------------------------------

def test_a_task_of_an_approve_before_type_waits_until_a_person_decides(team):
    held = int(team.cli("send", "ops", "deploy", "--content", '{"to": "prod"}',
                        check=True).stdout)
    time.sleep(1.5)  # the agent is idle and awake: it must still not take it
    assert task(team, held)["status"] == "awaiting_approval"
    with queue(team) as q:
        [request] = [a for a in q.list_approvals("pending") if a["task_id"] == held]
    assert request["kind"] == "task"
    team.cli("approve", str(request["id"]), check=True)
    assert finished(team, held)["result"] == {"ok": 1}

    refused = int(team.cli("send", "ops", "deploy", check=True).stdout)
    with queue(team) as q:
        [request] = [a for a in q.list_approvals("pending") if a["task_id"] == refused]
    team.cli("deny", str(request["id"]), "--reason", "frozen", "--by", "ana", check=True)
    gone = task(team, refused)
    assert (gone["status"], gone["error"]) == ("cancelled", "denied by ana: frozen")
    assert task(team, int(team.cli("send", "ops", "status", check=True).stdout))  # others run
