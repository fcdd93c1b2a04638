"""coffee.* reading what happened: getRestartHistory, getEvents, notifications, getMetrics,
getCosts.

In-process against a fake supervisord and a real MessageQueue on a throwaway SQLite file
(tests/rpc_rig.py), as test_rpc_fast.py; every result survives supervisord's marshalling and
every fault is one short line with supervisor's fault code.
"""
from __future__ import annotations

import math
import sqlite3

import pytest
from supervisor.xmlrpc import Faults

from coffee_team.rpc import values as rpcvalues
from coffee_team.taskstate import STATES
from tests.rpc_rig import HUGE, in_progress
from tests.rpc_rig import coffee, supervisor_globals  # noqa: F401 (fixtures)


# --- getRestartHistory, getEvents ------------------------------------------------------------

def test_restart_history_is_restart_events_newest_first(coffee):
    q = coffee.queue
    crash = q.record_event("assistant", "crash", exitstatus=1)
    coffee.clock.advance(1)
    q.record_event("assistant", "requeued", count=2)  # not a restart kind
    q.record_event("architect", "crash")  # another agent
    scheduled = q.record_event("assistant", "restart_scheduled", delay=2**40)
    q.save_restart_state("assistant", attempts=3, given_up=True, last_crash_at=coffee.clock())

    history = coffee.call("getRestartHistory", "assistant")
    assert [e["id"] for e in history["events"]] == [scheduled, crash]
    assert history["events"][1]["detail"] == {"exitstatus": 1}
    assert history["events"][0]["detail"] == {"delay": float(2**40)}  # beyond 32 bits
    assert (history["agent"], history["restarts"], history["given_up"]) == ("assistant", 3, True)
    assert history["last_crash_at"] == coffee.clock()
    assert "next_restart_at" not in history and "running_since" not in history
    assert [e["id"] for e in coffee.call("getRestartHistory", "assistant", 1)["events"]] == [
        scheduled]
    quiet = coffee.call("getRestartHistory", "code_developer")
    assert quiet["events"] == [] and (quiet["restarts"], quiet["given_up"]) == (0, False)


def test_restart_history_of_a_corrupt_row_is_a_fault_not_a_crash(coffee):
    """Whatever goes wrong inside is a FAILED fault naming the error, and it is logged."""
    connection = sqlite3.connect(coffee.team.database_url)
    with connection:
        connection.execute("INSERT INTO events (ts, agent, kind, detail) VALUES (?, ?, ?, ?)",
                           (coffee.clock(), "assistant", "crash", "{not json"))
    connection.close()
    error = coffee.fault("getRestartHistory", "assistant")
    assert error.code == Faults.FAILED and "JSONDecodeError" in error.text
    assert any("getRestartHistory failed" in line for line in coffee.supervisord.logged)


def test_events_since_id_oldest_first(coffee):
    ids = [coffee.queue.record_event("assistant", "crash", n=i) for i in range(5)]
    events_ = coffee.call("getEvents")
    assert [e["id"] for e in events_] == ids
    assert [e["detail"]["n"] for e in events_] == list(range(5))
    assert [e["id"] for e in coffee.call("getEvents", ids[1], 2)] == ids[2:4]
    assert coffee.call("getEvents", ids[-1]) == []


HISTORY_EVENT_FAULTS = [
    ("history unknown agent", "getRestartHistory", ("nobody",), Faults.BAD_NAME),
    ("history int agent", "getRestartHistory", (7,), Faults.BAD_ARGUMENTS),
    ("history 2 MB agent", "getRestartHistory", (HUGE,), Faults.BAD_NAME),
    ("history limit 0", "getRestartHistory", ("assistant", 0), Faults.BAD_ARGUMENTS),
    ("history limit 1001", "getRestartHistory", ("assistant", 1001), Faults.BAD_ARGUMENTS),
    ("events string since", "getEvents", ("0",), Faults.BAD_ARGUMENTS),
    ("events negative since", "getEvents", (-1,), Faults.BAD_ARGUMENTS),
    ("events since beyond 32 bits", "getEvents", (2**31,), Faults.BAD_ARGUMENTS),
    ("events double limit", "getEvents", (0, 1.5), Faults.BAD_ARGUMENTS),
    ("notifications double since", "getNotifications", (1.5,), Faults.BAD_ARGUMENTS),
    ("notifications limit 0", "getNotifications", (0, 0), Faults.BAD_ARGUMENTS),
    ("ack unknown id", "ackNotification", (2**31 - 1,), Faults.BAD_ARGUMENTS),
    ("ack string id", "ackNotification", ("1",), Faults.BAD_ARGUMENTS),
    ("ack bool id", "ackNotification", (True,), Faults.BAD_ARGUMENTS),
]


@pytest.mark.parametrize("label,method,args,code", HISTORY_EVENT_FAULTS,
                         ids=[f[0] for f in HISTORY_EVENT_FAULTS])
def test_journal_methods_refuse_bad_input(coffee, label, method, args, code):
    assert coffee.fault(method, *args).code == code


# --- notifications ---------------------------------------------------------------------------

def test_notifications_and_ack(coffee):
    ids = [coffee.queue.notify(level, "assistant", f"title {level}", "message")
           for level in ("INFO", "WARNING", "CRITICAL")]
    rows = coffee.call("getNotifications")
    assert [n["id"] for n in rows] == ids
    assert [n["level"] for n in rows] == ["INFO", "WARNING", "CRITICAL"]
    assert all(n["sound"] is False and n["acknowledged"] is False for n in rows)
    assert [n["id"] for n in coffee.call("getNotifications", ids[0], 1)] == [ids[1]]

    assert coffee.call("ackNotification", ids[2]) is True
    assert coffee.call("ackNotification", ids[2]) is False  # already acknowledged
    acked = {n["id"]: n["acknowledged"] for n in coffee.call("getNotifications")}
    assert acked == {ids[0]: False, ids[1]: False, ids[2]: True}


# --- getMetrics ------------------------------------------------------------------------------

def test_metrics_measure_claim_to_finish(coffee):
    slow = in_progress(coffee, "architect", "design_request")
    coffee.clock.advance(0.25)
    coffee.queue.mark_completed(slow, None)
    fast = in_progress(coffee, "assistant", "question")
    coffee.clock.advance(0.05)
    coffee.queue.mark_failed(fast, "boom")

    metrics = coffee.call("getMetrics")
    assert metrics["days"] == 7.0 and isinstance(metrics["days"], float)
    assert [b["task_type"] for b in metrics["bottlenecks"]] == ["design_request", "question"]
    design = metrics["bottlenecks"][0]
    assert design["count"] == 1 and math.isclose(design["avg_ms"], 250, abs_tol=1)
    assert math.isclose(design["max_ms"], 250, abs_tol=1)
    agents = {a["agent"]: a for a in metrics["agents"]}
    assert set(agents) == {"architect", "assistant"}
    assert math.isclose(agents["assistant"]["avg_ms"], 50, abs_tol=1)

    coffee.clock.advance(2 * 86400)
    assert coffee.call("getMetrics", 1) == {"days": 1.0, "bottlenecks": [], "agents": [],
                                            "states": dict.fromkeys(STATES, 0)}
    assert len(coffee.call("getMetrics", 2.5)["agents"]) == 2
    assert coffee.call("getMetrics", rpcvalues.MAX_DAYS)["days"] == rpcvalues.MAX_DAYS


@pytest.mark.parametrize("days", [0, -1, True, "7", float("nan"), float("inf"), 1e300,
                                  rpcvalues.MAX_DAYS + 1], ids=repr)
def test_metrics_refuse_bad_days(coffee, days):
    assert coffee.fault("getMetrics", days).code == Faults.BAD_ARGUMENTS


# --- getCosts --------------------------------------------------------------------------------

def test_costs_add_up_by_agent_type_and_day(coffee):
    q = coffee.queue
    q.record_usage(1, "architect", "design_request", {"cost_usd": 0.25, "tokens_in": 10,
                                                      "tokens_out": 5, "cache_read": 3})
    q.record_usage(2, "architect", "review", {"cost_usd": 0.5, "tokens_in": 1})
    coffee.clock.advance(86400)
    q.record_usage(3, "assistant", "question", {"cost_usd": 0.125, "tokens_out": 2**40})
    by_agent = coffee.call("getCosts")
    assert [(g["key"], g["runs"], g["cost_usd"]) for g in by_agent["groups"]] == \
        [("architect", 2, 0.75), ("assistant", 1, 0.125)]
    assert by_agent["total"]["cost_usd"] == 0.875 and by_agent["total"]["tokens_in"] == 11
    assert by_agent["total"]["tokens_out"] == float(2**40 + 5)  # beyond 32 bits: a double
    assert [g["key"] for g in coffee.call("getCosts", "type")["groups"]] == \
        ["design_request", "question", "review"]
    assert len(coffee.call("getCosts", "day")["groups"]) == 2
    assert coffee.call("getCosts", "agent", 0.5)["total"]["runs"] == 1


@pytest.mark.parametrize("args", [("team",), (3,), ("agent", 0), ("agent", "7")], ids=repr)
def test_costs_refuse_bad_arguments(coffee, args):
    assert coffee.fault("getCosts", *args).code == Faults.BAD_ARGUMENTS
