"""An llm agent's answer is never lost on the way to its task (issue 26, item 6), in-process: a
real Agent, MessageQueue and LlmRunner running the fake coding CLIs as real subprocesses.

- a ``send`` list of 10,000 follow-ups (660 KB; 1.3 MB on one stream-json line) is delivered
  whole, the stored text cut; past a recipient's max_queue_size it is refused whole, with the
  reason on the task and one notification;
- an unknown recipient among valid follow-ups: the valid ones are sent, the bad one recorded;
- a CLI that exits 0 while a double-forked descendant (setsid) holds its stdout: the task
  completes with the answer and its cost at the exit plus the grace, the descendant killed
  (and, with the agent a child subreaper, reaped: no zombie).

The last one again under supervisord, where the agent program is a subreaper by itself:
test_a_real_agent_adopts_ends_and_reaps_what_its_cli_left.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from coffee_team import handlers
from coffee_team.parentwatch import become_subreaper, children
from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, temporary_project, wait_until
from tests.integration.test_llm_agent import FAKE, llm_agent, project  # noqa: F401 (fixture)
from tests.integration.test_llm_runs import CODEX, STREAM, alarm_restored, usage_rows  # noqa: F401

pytestmark = pytest.mark.slow  # the tests here start processes


def sender_and_worker(*options: str, **team):
    """architect's answers ask for follow-ups of type job, which worker handles."""
    return lambda log: {
        "architect": {**llm_agent(log, "--send", "job", *options), "handles": ["design"]},
        "worker": {"check_interval": 3600, "handles": ["job"],
                   "handler": "coffee_team.agent.demo:handle"}}


def state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def lingering(p) -> int:
    return next(run["lingering"] for run in p.runs() if "lingering" in run)


@pytest.mark.parametrize("output, count", [("json", 10_000), ("stream-json", 20_000)])
def test_ten_thousand_follow_ups_and_more_in_one_answer_are_all_delivered(project, output, count):
    extra = STREAM if output == "stream-json" else ["--output-format", "json"]
    p = project(sender_and_worker(*extra), max_queue_size=20_000)
    task_id = p.send("architect", f"FAKE-SEND-MANY={count}", type="design")
    started = time.monotonic()
    assert p.drain("architect") == 1
    took = time.monotonic() - started
    task = p.task(task_id)
    assert task["status"] == "completed", task["error"]
    assert "undelivered" not in task["result"] and "send" not in task["result"]
    assert task["result"]["text"].endswith("more characters cut]")  # what is stored is cut
    assert len(json.dumps(task["result"])) < 1024 * 1024
    sent = p.queue.list_tasks(agent="worker", limit=count + 10)
    assert len(sent) == count
    assert sorted(t["content"]["n"] for t in sent) == list(range(count))
    assert p.queue.notifications() == []
    assert [row[0] for row in usage_rows(p)] == ["ok"]  # its cost recorded
    print(f"{output}: {count} follow-ups delivered in {took:.2f}s")


def test_follow_ups_past_the_recipients_queue_are_refused_together_with_the_reason(project):
    p = project(sender_and_worker())  # max_queue_size 1000
    task_id = p.send("architect", "FAKE-SEND-MANY=10000", type="design")
    assert p.drain("architect") == 1
    task = p.task(task_id)
    assert task["status"] == "completed"
    result = task["result"]
    assert result["undelivered_count"] == 10_000 and len(result["undelivered"]) == 100
    assert "max_queue_size 1000" in result["undelivered"][0]["error"]
    assert p.queue.list_tasks(agent="worker") == []  # one transaction: none of them
    [note] = p.queue.notifications()
    assert note["title"] == f"architect: 10000 follow-ups of task #{task_id} not sent"
    assert "(none was sent)" in note["message"] and "and 9990 more" in note["message"]


def test_an_unknown_recipient_costs_only_its_own_follow_up(project):
    p = project(sender_and_worker())
    task_id = p.send("architect", "FAKE-SEND-MANY=3 FAKE-SEND-TO=ghost", type="design")
    assert p.drain("architect") == 1
    task = p.task(task_id)
    assert task["status"] == "completed"
    [bad] = task["result"]["undelivered"]
    assert bad["follow_up"]["recipient"] == "ghost"
    assert bad["error"].startswith("unknown recipient 'ghost'")
    assert sorted(t["content"]["n"] for t in p.queue.list_tasks(agent="worker")) == [0, 1, 2]
    [note] = p.queue.notifications()
    assert note["title"] == f"architect: 1 follow-up of task #{task_id} not sent"
    assert "(the others were sent)" in note["message"]


@pytest.fixture
def subreaper():
    """This test process adopts orphans, as the agent program does (and no longer after)."""
    assert become_subreaper()
    yield
    become_subreaper(False)


@pytest.mark.parametrize("cli", ["claude json", "claude stream-json", "codex"])
@pytest.mark.parametrize("adopting", [False, True], ids=["marker", "subreaper"])
def test_a_cli_whose_descendant_holds_its_stdout_ends_at_its_exit(project, alarm_restored,
                                                                   request, cli, adopting):
    if adopting:
        request.getfixturevalue("subreaper")
    if cli == "codex":
        def agents(log):
            return {"architect": {"check_interval": 3600, "timeout_seconds": 60, "llm": {
                "command": [sys.executable, CODEX, "exec", "--json", "--log", str(log)],
                "preset": "codex", "prompt_via": "arg"}}}
    else:
        extra = STREAM if cli.endswith("stream-json") else []

        def agents(log):
            return {"architect": {**llm_agent(log, "--cost", "0.125", *extra),
                                  "timeout_seconds": 60}}
    p = project(agents)
    before = children()
    task_id = p.send("architect", "FAKE-LINGER=600")
    started = time.monotonic()
    assert p.drain("architect") == 1
    took = time.monotonic() - started
    task = p.task(task_id)
    assert task["status"] == "completed", task["error"]
    assert task["result"]["text"].startswith("Done: ")
    assert took < 1.5 + handlers.EXIT_GRACE, f"took {took:.2f}s"
    [(outcome, _, cost, tokens_in, _)] = usage_rows(p)  # its cost kept
    assert outcome == "ok" and (cost == 0.125 if cli != "codex" else tokens_in == 1000)
    orphan = lingering(p)
    if adopting:
        assert state(orphan) is None  # killed and reaped: no zombie
        assert children() == before
    else:
        assert state(orphan) in (None, "Z")  # killed; its parent (not us) reaps it
    print(f"{cli} ({'subreaper' if adopting else 'marker'}): completed {took:.2f}s after "
          f"the task began")


def test_a_real_agent_adopts_ends_and_reaps_what_its_cli_left():
    with temporary_project() as project:
        log = project.root / "cli.jsonl"
        project.write_team({"architect": {**llm_agent(log, "--cost", "0.25", *STREAM),
                                          "timeout_seconds": 120}})
        boot_supervisord(project)
        infos = project.wait_states("RUNNING", 60)
        agent_pid = infos["architect"]["pid"]
        sent = time.monotonic()
        task_id = int(project.cli("send", "architect", "job", "--content",
                                  json.dumps("FAKE-LINGER=600"), check=True).stdout)

        def done():
            with MessageQueue.from_team(project.team) as q:
                task = q.get_task(task_id)
            return task if task["status"] in ("completed", "failed") else None
        task = wait_until(done, 30)
        took = time.monotonic() - sent
        assert task["status"] == "completed" and task["result"]["text"].startswith("Done: ")
        runs = [json.loads(line) for line in log.read_text().splitlines()]
        orphan = next(r["lingering"] for r in runs if "lingering" in r)
        wait_until(lambda: state(orphan) is None, 5)  # killed and reaped by the agent
        kids = Path(f"/proc/{agent_pid}/task")
        zombies = [pid for path in kids.glob("*/children")
                   for pid in path.read_text().split() if state(int(pid)) == "Z"]
        assert zombies == []
        assert project.infos()["architect"]["pid"] == agent_pid  # the same agent goes on
        with MessageQueue.from_team(project.team) as q:
            assert q.costs(0, "agent")["total"]["cost_usd"] == 0.25  # its cost kept
        print(f"supervisord: task completed {took:.2f}s after it was sent; lingering "
              f"PID {orphan} gone, no zombie")
        assert os.path.exists(f"/proc/{agent_pid}")
