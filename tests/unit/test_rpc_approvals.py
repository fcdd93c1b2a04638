"""coffee.listApprovals and coffee.decideApproval, in-process against a fake supervisord and a
real MessageQueue (tests/rpc_rig.py): what a waiting request looks like over XML-RPC, that
the first decision stands, and that bad input is a one-line fault with supervisor's code."""
from __future__ import annotations

import json

import pytest
from supervisor.xmlrpc import Faults

from tests.fast_team import assert_xmlrpc_safe
from tests.rpc_rig import coffee, supervisor_globals  # noqa: F401 (fixtures)


def ask(coffee, timeout=None) -> int:
    return coffee.queue.request_approval(
        "tool", "assistant", "Bash: git push origin main",
        {"tool_name": "Bash", "input": {"command": "git push origin main"}, "n": None},
        task_id=7, timeout=timeout)


def test_a_waiting_request_and_its_decision(coffee):
    asked = ask(coffee, timeout=600)
    [row] = coffee.call("listApprovals")
    assert_xmlrpc_safe(row)
    assert (row["id"], row["kind"], row["agent"], row["task_id"], row["status"]) == (
        asked, "tool", "assistant", 7, "pending")
    assert json.loads(row["request_json"])["input"] == {"command": "git push origin main"}
    assert "decided_by" not in row and "reason" not in row  # unset: left out
    decided = coffee.call("decideApproval", asked, "deny", "ana", "not from an agent")
    assert (decided["status"], decided["decided_by"], decided["reason"]) == (
        "denied", "ana", "not from an agent")
    assert coffee.call("listApprovals") == []
    assert [r["id"] for r in coffee.call("listApprovals", "denied")] == [asked]
    assert [r["id"] for r in coffee.call("listApprovals", "", 1)] == [asked]
    assert coffee.queue.approval(asked)["decided_by"] == "ana"  # the same row the CLI reads


def test_the_first_decision_stands_and_a_timeout_is_one(coffee):
    decided = ask(coffee)
    coffee.call("decideApproval", decided, "approve", "ana")
    error = coffee.fault("decideApproval", decided, "deny", "bob")
    assert error.code == Faults.FAILED and f"approval {decided} was already approved by ana" \
        in error.text
    late = ask(coffee, timeout=60)
    coffee.clock.advance(61)
    assert [r["status"] for r in coffee.call("listApprovals", "")][:1] == ["denied"]
    error = coffee.fault("decideApproval", late, "approve", "ana")
    assert error.code == Faults.FAILED and "by timeout" in error.text


@pytest.mark.parametrize("args, code, words", [
    ((99, "approve", "ana"), Faults.BAD_ARGUMENTS, "no approval with id 99"),
    ((1, "maybe", "ana"), Faults.BAD_ARGUMENTS, "decision must be approve or deny"),
    ((1, "approve", 5), Faults.BAD_ARGUMENTS, "by must be a string"),
    ((1, "approve", ""), Faults.BAD_ARGUMENTS, "who decides"),
    (("1", "approve", "ana"), Faults.BAD_ARGUMENTS, "id must be an int"),
    ((1,), Faults.INCORRECT_PARAMETERS, "takes 3 to 4 argument(s)"),
])
def test_bad_decisions_are_one_line_faults(coffee, args, code, words):
    ask(coffee)
    error = coffee.fault("decideApproval", *args)
    assert error.code == code and words in error.text and "\n" not in error.text


@pytest.mark.parametrize("args, words", [(("maybe",), "status must be one of"),
                                         (("pending", 0), "limit must be an int")])
def test_bad_listings_are_one_line_faults(coffee, args, words):
    error = coffee.fault("listApprovals", *args)
    assert error.code == Faults.BAD_ARGUMENTS and words in error.text
