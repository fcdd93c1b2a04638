"""coffee.sendMessage's after, listTasks' waiting state and getTeamStatus's next runs, through
the rpcinterface on a fake supervisord (no process)."""
from __future__ import annotations

import json
import time

import yaml
from supervisor.xmlrpc import Faults

from tests.rpc_rig import coffee, supervisor_globals  # noqa: F401  (fixtures)


def test_send_message_after_waits_until_its_parents_completed(coffee):
    first = coffee.call("sendMessage", "ci", "architect", "a", {})
    second = coffee.call("sendMessage", "ci", "architect", "b", {})
    child = coffee.call("sendMessage", "ci", "assistant", "verify", {}, 5, "", 0,
                        [first, second], "run")
    shown = coffee.call("getTask", child)
    assert shown["status"] == "waiting" and shown["waiting_on"] == 2
    assert [(p["id"], p["resolved"], p["on_dependency_failure"]) for p in shown["parents"]] == [
        (first, False, "run"), (second, False, "run")]
    assert [c["id"] for c in coffee.call("getTask", first)["children"]] == [child]
    assert [t["id"] for t in coffee.call("listTasks", {"status": "waiting"})] == [child]
    assert coffee.call("getQueueStats")["assistant"]["waiting"] == 1
    for _ in range(2):
        [task] = coffee.queue.claim("architect")
        coffee.queue.mark_failed(task.id, "boom")  # 'run': a failed parent counts as done
    assert coffee.call("getTask", child)["status"] == "pending"


def test_send_message_after_faults_are_one_line(coffee):
    for after, says in (([12345], "after #12345: no such task"), ("41", "array of task ids"),
                        ([0], "list of task ids")):
        fault = coffee.fault("sendMessage", "ci", "architect", "a", {}, 5, "", 0, after)
        assert fault.code == Faults.BAD_ARGUMENTS and says in fault.text
        assert "\n" not in fault.text
    fault = coffee.fault("sendMessage", "ci", "architect", "a", {}, 5, "", 0, [1], "skip")
    assert fault.code == Faults.BAD_ARGUMENTS and "on_dependency_failure" in fault.text


def test_team_status_carries_each_schedules_next_run(coffee):
    document = yaml.safe_load(coffee.team.path.read_text())
    document["agents"]["architect"]["schedule"] = [
        {"cron": "0 9 * * 1-5", "type": "daily_review", "timezone": "Europe/Paris"},
        {"cron": "*/10 * * * *", "type": "poll"}]
    coffee.team.path.write_text(yaml.safe_dump(document))
    coffee.call("reloadTeam")
    agents = {a["name"]: a for a in coffee.call("getTeamStatus")["agents"]}
    architect = agents["architect"]
    poll = architect["schedule"][1]
    assert poll["next_run"] - time.time() <= 600 and poll["timezone"] == "UTC"
    assert architect["next_run"] == min(e["next_run"] for e in architect["schedule"])
    assert "next_run" not in agents["assistant"] and "schedule" not in agents["assistant"]
    json.dumps(architect)  # plain values
