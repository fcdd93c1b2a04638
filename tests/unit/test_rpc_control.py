"""coffee.* acting on agents and tasks: restartAgent (deferred until the stop), the requeue when
supervisord reaps an agent, task control (cancel, retry, pause), a sick database.

In-process against a fake supervisord and a real MessageQueue on a throwaway SQLite file
(tests/rpc_rig.py), as test_rpc_fast.py; every result survives supervisord's marshalling and
every fault is one short line with supervisor's fault code.
"""
from __future__ import annotations

import os
import xmlrpc.client

import pytest
from supervisor import events
from supervisor.http import NOT_DONE_YET
from supervisor.states import ProcessStates
from supervisor.tests.base import DummyRequest
from supervisor.xmlrpc import DeferredXMLRPCResponse, Faults, RPCError

from coffee_team.errors import DatabaseMissing
from coffee_team.rpc import queue as rpcqueue
from coffee_team.queue import MessageQueue
from tests.fake_supervisord import FakeSupervisord
from tests.clock import FakeClock
from tests.fast_team import assert_xmlrpc_safe, real_time_clock, temp_root, write_team
from tests.rpc_rig import AGENTS, build, Coffee, HUGE, in_progress
from tests.rpc_rig import coffee, supervisor_globals  # noqa: F401 (fixtures)


# --- restartAgent ----------------------------------------------------------------------------

def manual_restarts(coffee: Coffee, agent: str) -> list[dict]:
    return [e for e in coffee.queue.events(agent=agent, limit=1000) if e["kind"] == "manual_restart"]


def test_restart_of_a_stopped_agent_clears_give_up_and_starts(coffee):
    process = coffee.supervisord.process("assistant")
    process.state = ProcessStates.FATAL
    coffee.queue.save_restart_state("assistant", attempts=3, given_up=True,
                                    next_restart_at=coffee.clock() + 60)

    assert coffee.call("restartAgent", "assistant") is True

    assert process.spawned and not process.stop_called
    assert process.get_state() == ProcessStates.STARTING
    state = coffee.queue.restart_state("assistant")
    assert (state["attempts"], state["given_up"], state["next_restart_at"]) == (0, False, None)
    [event] = manual_restarts(coffee, "assistant")
    assert event["detail"] == {"source": "xmlrpc", "from_state": "FATAL"}


def test_restart_of_a_running_agent_that_stops_at_once(coffee):
    process = coffee.supervisord.process("architect")
    old_pid = process.pid
    assert coffee.call("restartAgent", "architect") is True
    assert process.stop_called and process.spawned and process.pid != old_pid
    assert manual_restarts(coffee, "architect")[0]["detail"]["from_state"] == "RUNNING"


def test_restart_waits_for_the_stop_with_a_deferred_callback(coffee):
    """The stop takes a while: restartAgent returns supervisor's deferred callback instead of
    blocking; it answers NOT_DONE_YET until the child is reaped, then starts the agent."""
    process = coffee.supervisord.process("architect")
    process.slow_stop = True

    onwait = coffee.call("restartAgent", "architect")

    assert callable(onwait) and onwait.rpcinterface is coffee.iface and onwait.delay > 0
    assert process.stop_called and process.get_state() == ProcessStates.STOPPING
    process.stop_report_called = False
    assert onwait() is NOT_DONE_YET
    assert process.stop_report_called and not process.spawned
    coffee.clock.advance(1)
    assert onwait() is NOT_DONE_YET
    process.reaped()
    assert onwait() is True
    assert process.spawned and process.get_state() == ProcessStates.STARTING


def test_restart_gives_up_waiting_after_stopwaitsecs(coffee):
    process = coffee.supervisord.process("architect")
    process.slow_stop = True
    onwait = coffee.call("restartAgent", "architect")
    coffee.clock.advance(process.config.stopwaitsecs + 4)
    assert onwait() is NOT_DONE_YET  # still inside stopwaitsecs + 5 s of grace
    coffee.clock.advance(2)
    with pytest.raises(RPCError) as info:
        onwait()
    assert info.value.code == Faults.FAILED and "did not stop in time" in info.value.text
    assert "STOPPING" in info.value.text and not process.spawned


def answer(request: DummyRequest):
    """The XML-RPC answer supervisor's producer pushed onto the request."""
    assert request._error is None  # not an HTTP 500
    [body] = request.producers
    return xmlrpc.client.loads(body)[0][0]


def test_deferred_restart_through_supervisors_http_producer(coffee):
    """The callback plugs into supervisor's DeferredXMLRPCResponse (what the HTTP channel
    polls every ``delay`` seconds): success and time-out both become XML-RPC answers."""
    process = coffee.supervisord.process("architect")
    process.slow_stop = True
    request = DummyRequest("/RPC2", None, None, None)
    response = DeferredXMLRPCResponse(request, coffee.call("restartAgent", "architect"))
    assert response.more() is NOT_DONE_YET and request.producers == []
    process.reaped()
    response.more()
    assert answer(request) is True

    process = coffee.supervisord.process("code_developer")
    process.slow_stop = True
    request = DummyRequest("/RPC2", None, None, None)
    response = DeferredXMLRPCResponse(request, coffee.call("restartAgent", "code_developer"))
    coffee.clock.advance(process.config.stopwaitsecs + 6)
    response.more()
    with pytest.raises(xmlrpc.client.Fault) as info:
        answer(request)
    assert info.value.faultCode == Faults.FAILED


def test_restart_spawn_error_is_supervisors_fault(coffee):
    process = coffee.supervisord.process("assistant")
    process.state = ProcessStates.EXITED
    process.spawn_error = "too many open files"
    assert coffee.fault("restartAgent", "assistant").code == Faults.SPAWN_ERROR
    assert coffee.queue.restart_state("assistant")["given_up"] is False  # cleared before


def test_restart_of_an_agent_missing_from_supervisord(coffee):
    """team.yaml has it but the running config does not (not regenerated and reread yet)."""
    del coffee.supervisord.process_groups["assistant"]
    error = coffee.fault("restartAgent", "assistant")
    assert error.code == Faults.BAD_NAME and "regenerate" in error.text
    assert manual_restarts(coffee, "assistant") == []


@pytest.mark.parametrize("name,code", [("nobody", Faults.BAD_NAME), ({}, Faults.BAD_ARGUMENTS),
                                       (HUGE, Faults.BAD_NAME)], ids=["unknown", "struct", "huge"])
def test_restart_refuses_bad_names(coffee, name, code):
    assert coffee.fault("restartAgent", name).code == code


# --- requeue when supervisord reaps an agent -------------------------------------------------

def notify_state(coffee: Coffee, event_class, name: str, group_name: str | None = None,
                 from_state: int = ProcessStates.RUNNING) -> None:
    """Publish a process-state event the way supervisord's Subprocess.change_state does."""
    process = coffee.supervisord.process(name, group_name)
    events.notify(event_class(process, from_state, expected=False))


def requeued_events(coffee: Coffee) -> list[dict]:
    return [e for e in coffee.queue.events(limit=1000) if e["kind"] == "requeued"]


@pytest.mark.parametrize("event_class", [events.ProcessStateExitedEvent,
                                         events.ProcessStateStoppedEvent,
                                         events.ProcessStateBackoffEvent])
def test_reaped_agent_tasks_are_requeued_at_once(coffee, event_class):
    held = in_progress(coffee, "assistant")
    other = in_progress(coffee, "architect")
    notify_state(coffee, event_class, "assistant")
    assert (coffee.task(held)["status"], coffee.task(held)["claimed_by"]) == ("pending", None)
    assert coffee.task(other)["status"] == "in_progress"  # only the dead agent's tasks
    [event] = requeued_events(coffee)
    assert event["agent"] == "assistant"
    assert event["detail"] == {"count": 1, "by": "supervisord"}
    assert [t.id for t in coffee.queue.claim("assistant", 1)] == [held]


@pytest.mark.parametrize("event_class", [events.ProcessStateRunningEvent,
                                         events.ProcessStateStartingEvent,
                                         events.ProcessStateStoppingEvent,
                                         events.ProcessStateFatalEvent])
def test_other_state_changes_leave_tasks_alone(coffee, event_class):
    held = in_progress(coffee, "assistant")
    notify_state(coffee, event_class, "assistant")
    assert coffee.task(held)["status"] == "in_progress"
    assert requeued_events(coffee) == []


def test_requeue_without_held_tasks_records_nothing(coffee):
    notify_state(coffee, events.ProcessStateExitedEvent, "assistant")
    assert requeued_events(coffee) == []


def test_programs_that_are_not_team_agents_are_ignored(coffee):
    """The watchdog listener, or an agent's name reused inside another group, is not the
    agent: its death must not requeue the agent's work."""
    held = in_progress(coffee, "assistant")
    coffee.supervisord.add_program("watchdog")
    notify_state(coffee, events.ProcessStateExitedEvent, "watchdog")
    coffee.supervisord.add_program("assistant", group_name="pool")
    notify_state(coffee, events.ProcessStateExitedEvent, "assistant", group_name="pool")
    assert coffee.task(held)["status"] == "in_progress"


def test_requeue_failure_is_logged_never_raised(supervisor_globals):
    """The handler runs inside supervisord's state machine: a database it cannot use is
    logged and left to the watchdog's fallback requeue."""
    with temp_root() as root:
        team = write_team(root, AGENTS, database_path="data/broken.db", database=False)
        with open(team.database_url, "w") as f:
            f.write("this is not a database " * 100)
        supervisord = FakeSupervisord(team.names)
        build(team, supervisord, real_time_clock())
        process = supervisord.process("assistant")
        events.notify(events.ProcessStateExitedEvent(process, ProcessStates.RUNNING, False))
        assert [line for line in supervisord.logged if "requeue of assistant left to the watchdog" in line]


def test_supervisord_stopping_closes_the_queue_and_ends_requeues(coffee):
    held = in_progress(coffee, "assistant")
    coffee.call("getQueueStats")  # the interface's connection is open
    assert coffee.iface._queue is not None
    events.notify(events.SupervisorStoppingEvent())
    assert coffee.iface._queue is None
    notify_state(coffee, events.ProcessStateExitedEvent, "assistant")
    assert coffee.task(held)["status"] == "in_progress"  # the agent requeues its own
    assert coffee.fault("getQueueStats").code == Faults.SHUTDOWN_STATE
    assert coffee.iface._queue is None  # and it was not reopened


# --- task control ------------------------------------------------------------------------------

def test_cancel_then_retry_a_task_and_read_it_back(coffee):
    task_id = in_progress(coffee, "assistant")
    assert coffee.iface.cancelTask(task_id) == "in_progress"
    task = coffee.iface.getTask(task_id)
    assert task["status"] == "cancelled" and task["id"] == task_id
    assert_xmlrpc_safe(task)
    assert coffee.iface.retryTask(task_id) == "cancelled"
    assert coffee.iface.getTask(task_id)["status"] == "pending"
    # the agent's late completion of the cancelled attempt changed nothing
    assert coffee.queue.mark_completed(task_id, {"late": True}, agent="assistant") is False


@pytest.mark.parametrize("method, args, code", [
    ("getTask", (999999,), Faults.BAD_ARGUMENTS),
    ("cancelTask", (999999,), Faults.BAD_ARGUMENTS),
    ("getTask", ("1",), Faults.BAD_ARGUMENTS),
    ("retryTask", (-1,), Faults.BAD_ARGUMENTS),
    ("pauseAgent", ("nobody",), Faults.BAD_NAME),
    ("pauseAgent", ("assistant", 5), Faults.BAD_ARGUMENTS),
    ("resumeAgent", ("nobody",), Faults.BAD_NAME),
])
def test_task_control_refuses_bad_input(coffee, method, args, code):
    with pytest.raises(RPCError) as info:
        getattr(coffee.iface, method)(*args)
    assert info.value.code == code


def test_retry_of_a_completed_task_is_failed(coffee):
    task_id = in_progress(coffee, "assistant")
    coffee.queue.mark_completed(task_id, {"ok": 1}, agent="assistant")
    with pytest.raises(RPCError) as info:
        coffee.iface.retryTask(task_id)
    assert info.value.code == Faults.FAILED and "completed" in info.value.text


def test_pause_holds_claims_until_resume(coffee):
    task_id = coffee.queue.send("ci", "assistant", "job", {})
    assert coffee.iface.pauseAgent("assistant", "budget") is True
    assert coffee.queue.claim("assistant", 1) == []
    assert coffee.iface.resumeAgent("assistant") is True
    assert coffee.iface.resumeAgent("assistant") is False
    assert [t.id for t in coffee.queue.claim("assistant", 1)] == [task_id]


# --- a sick database (issue 18) ---------------------------------------------------------------

def test_team_status_shows_the_processes_and_one_database_line_when_it_cannot_open(
        supervisor_globals):
    with temp_root() as root:
        team = write_team(root, AGENTS, database_path="data/broken.db", database=False)
        with open(team.database_url, "w") as f:
            f.write("this is not a database " * 100)
        clock = FakeClock()
        iface = build(team, FakeSupervisord(team.names), clock)
        status = iface.getTeamStatus()
        assert [a["name"] for a in status["agents"]] == ["architect", "code_developer",
                                                         "assistant"]
        assert status["database"] == "DatabaseError: file is not a database"
        assert "restarts" not in status["agents"][0]
        assert_xmlrpc_safe(status)
        # Not tried again at once: a database that failed fails fast for OPEN_RETRY seconds.
        fault = pytest.raises(RPCError, iface.getQueueStats).value
        assert fault.code == Faults.FAILED and "file is not a database" in fault.text
        os.unlink(team.database_url)
        clock.advance(rpcqueue.OPEN_RETRY)
        assert "database not found" in iface.getTeamStatus()["database"]  # never made here
        MessageQueue.from_team(team, create=True).close()  # as the watchdog or start would
        clock.advance(rpcqueue.OPEN_RETRY)
        assert "database" not in iface.getTeamStatus()  # a good file now: back at once
        iface._queue.close()


def test_a_renamed_deleted_or_replaced_database_is_reported_and_never_followed(coffee):
    coffee.call("getQueueStats")
    path = coffee.team.database_url
    os.rename(path, path + ".moved")
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    status = coffee.iface.getTeamStatus()
    assert f"was renamed to {path}.moved while open" in status["database"]
    assert len(status["agents"]) == 3
    fault = coffee.fault("sendMessage", "ci", "assistant", "question", {})
    assert fault.code == Faults.FAILED and "was renamed" in fault.text
    assert not os.path.exists(path)  # nothing made a new one
    os.rename(path + ".moved", path)  # the same file back: on where it stopped
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    assert "database" not in coffee.iface.getTeamStatus()
    os.link(path, path + ".kept")
    os.unlink(path)
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    assert "renamed while open" in coffee.iface.getTeamStatus()["database"]  # a name is left
    os.unlink(path + ".kept")
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    assert "was deleted while open" in coffee.iface.getTeamStatus()["database"]
    with pytest.raises(DatabaseMissing, match="shows one was there"):
        MessageQueue(path, agents=coffee.team.names)  # a sender makes no new file there
    other = coffee.team.root / "other.db"
    MessageQueue(str(other), agents=coffee.team.names).close()
    os.rename(other, path)  # another database at the path
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    assert "replaced by another database" in coffee.iface.getTeamStatus()["database"]
    fault = coffee.fault("getQueueStats")
    assert fault.code == Faults.FAILED and "replaced" in fault.text
    logged = "\n".join(coffee.supervisord.logged)
    assert logged.count("was deleted while open") == 1 and "database file back" in logged


