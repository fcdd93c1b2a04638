"""The watchdog listener's protocol loop and the fakes' formats, against a fake supervisord, a
fake clock and a real SQLite queue (tests/watchdog_rig.py); the launch, restarts and health
checks have their own files. Nothing here sleeps for real or starts a process.
"""
from __future__ import annotations

import re
import sqlite3
import xmlrpc.client
from types import SimpleNamespace

import pytest
from supervisor import events as sv_events
from supervisor.states import ProcessStates
from supervisor.xmlrpc import Faults

from tests import fakes
from tests.fakes import FakeSupervisor
from tests.watchdog_rig import AGENTS, BASE, check, LAUNCH_ORDER
from tests.watchdog_rig import health_rig, make_rig, rig  # noqa: F401 (fixtures)


# --- the fakes speak supervisord's formats ---------------------------------------------------

def test_event_text_matches_supervisors_own_exited_event():
    process = SimpleNamespace(config=SimpleNamespace(name="code_searcher"), pid=123,
                              group=SimpleNamespace(config=SimpleNamespace(name="code_searcher")))
    payload = sv_events.ProcessStateExitedEvent(process, ProcessStates.RUNNING,
                                                expected=False).payload()
    text = fakes.process_event_text("PROCESS_STATE_EXITED", "code_searcher", "RUNNING", serial=7,
                                    expected=0, pid=123)
    header = ("ver:3.0 server:supervisor serial:7 pool:watchdog poolserial:7 "
              f"eventname:PROCESS_STATE_EXITED len:{len(payload)}\n")
    assert text == header + payload
    assert payload == "processname:code_searcher groupname:code_searcher from_state:RUNNING " \
                      "expected:0 pid:123"
    event = fakes.parse(text)
    assert event.eventname == "PROCESS_STATE_EXITED"
    assert event.payload_headers["expected"] == "0"


def test_supervisor_running_event_has_an_empty_payload():
    text = fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING", serial=3)
    assert text.endswith("eventname:SUPERVISOR_STATE_CHANGE_RUNNING len:0\n")


def test_fake_supervisor_faults_like_supervisord():
    rpc = FakeSupervisor(["a"], state="RUNNING")
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.supervisor.startProcess("a", False)
    assert info.value.faultCode == Faults.ALREADY_STARTED == 60
    assert info.value.faultString == "ALREADY_STARTED: a"
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.supervisor.getProcessInfo("ghost")
    assert info.value.faultCode == Faults.BAD_NAME
    rpc.set_state("a", "EXITED")
    with pytest.raises(xmlrpc.client.Fault) as info:
        rpc.supervisor.stopProcess("a", False)
    assert info.value.faultCode == Faults.NOT_RUNNING


# --- the protocol loop -----------------------------------------------------------------------

TOKENS = re.compile(r"(READY\n|RESULT (\d+)\n(OK|FAIL))*")


def assert_only_tokens(stdout):
    assert TOKENS.fullmatch(stdout), repr(stdout)


def test_run_answers_each_event_and_exits_0_at_eof(make_rig):
    stdin = (fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING", serial=1)
             + fakes.process_event_text("PROCESS_STATE_EXITED", "code_searcher", "RUNNING",
                                        serial=2, expected=0))
    rig = make_rig()
    rig.wd = rig.new_watchdog(stdin)
    original_start = rig.rpc.startProcess

    def start_and_die(name, wait=True):  # code_searcher dies right after launch
        result = original_start(name, wait)
        if name == "code_searcher":
            rig.rpc.set_state(name, "EXITED")
        return result

    rig.rpc.startProcess = start_and_die
    assert rig.wd.run() == 0
    out = rig.stdout.getvalue()
    assert out == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    assert_only_tokens(out)
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    assert rig.due_in("code_searcher") == BASE
    assert "stdin closed" in rig.stderr.getvalue()


def test_run_reports_ready_once_before_each_read(make_rig):
    rig = make_rig()
    reads = []

    def spy(timeout=None):
        out = rig.stdout.getvalue()
        reads.append(out.count("READY\n") - out.count("OK") - out.count("FAIL"))
        return original_read(timeout)

    stdin = "".join(fakes.event_text("TICK_5", serial=i, when=1700000000 + 5 * i)
                    for i in range(1, 4))
    rig.wd = rig.new_watchdog(stdin)
    original_read = rig.wd.protocol.read_event
    rig.wd.protocol.read_event = spy
    assert rig.wd.run() == 0
    assert reads == [1, 1, 1, 1]  # exactly one outstanding READY at every read (incl. EOF)
    assert rig.stdout.getvalue() == "READY\n" + "RESULT 2\nOKREADY\n" * 3


def test_malformed_event_gets_fail_and_the_loop_continues(make_rig):
    rig = make_rig()
    stdin = ("this is not a header\n"
             + fakes.process_event_text("PROCESS_STATE_EXITED", "architect", "RUNNING",
                                        expected=0))
    rig.rpc.set_state("architect", "EXITED")
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    out = rig.stdout.getvalue()
    assert out == "READY\nRESULT 4\nFAILREADY\nRESULT 2\nOKREADY\n"
    assert_only_tokens(out)
    assert "malformed event ignored" in rig.stderr.getvalue()
    assert rig.due_in("architect") == BASE


def test_truncated_last_event_gets_fail_then_eof(make_rig):
    rig = make_rig()
    text = fakes.process_event_text("PROCESS_STATE_EXITED", "architect", "RUNNING", expected=0)
    rig.wd = rig.new_watchdog(text[:-5])
    assert rig.wd.run() == 0
    assert rig.stdout.getvalue() == "READY\nRESULT 4\nFAILREADY\n"
    assert rig.restart_state("architect")["attempts"] == 0


def test_exception_while_handling_is_logged_and_still_answered_ok(make_rig, monkeypatch):
    rig = make_rig()
    stdin = (fakes.process_event_text("PROCESS_STATE_RUNNING", "architect", "STARTING", serial=1)
             + fakes.process_event_text("PROCESS_STATE_RUNNING", "code_developer", "STARTING",
                                        serial=2))
    real = rig.queue.record_event
    failures = [sqlite3.OperationalError("database is locked")]

    def record_event(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(rig.queue, "record_event", record_event)
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    out = rig.stdout.getvalue()
    assert out == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
    err = rig.stderr.getvalue()
    assert "error in PROCESS_STATE_RUNNING: OperationalError: database is locked" in err
    assert rig.restart_state("code_developer")["running_since"] == rig.clock()  # 2nd handled
    assert [e["agent"] for e in rig.events(kind="running")] == ["code_developer"]


def test_rpc_fault_while_handling_is_logged_and_still_answered_ok(make_rig):
    rig = make_rig()
    rig.rpc.set_state("architect", "EXITED")
    rig.rpc.fail("getProcessInfo", xmlrpc.client.Fault(Faults.FAILED, "FAILED: boom"))
    stdin = fakes.process_event_text("PROCESS_STATE_STOPPED", "architect", "STOPPING")
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    assert rig.stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    assert "FAILED: boom" in rig.stderr.getvalue()  # logged to stderr, never to stdout


def test_run_fires_due_restarts_between_events(make_rig):
    rig = make_rig()
    rig.queue.save_restart_state("architect", attempts=1, next_restart_at=rig.clock() - 1)
    rig.wd = rig.new_watchdog(fakes.event_text("TICK_5", when=1700000005))
    assert rig.wd.run() == 0
    assert rig.rpc.started() == ["architect"]
    assert_only_tokens(rig.stdout.getvalue())


def test_timer_errors_do_not_stop_the_loop(make_rig):
    rig = make_rig(health_check_interval=30)
    rig.rpc.set_state("architect", "RUNNING")
    rig.clock.advance(30)
    rig.rpc.fail("getAllProcessInfo", ConnectionRefusedError(111, "Connection refused"))
    rig.wd = rig.new_watchdog(fakes.event_text("TICK_5", when=1700000005))
    rig.clock.advance(30)
    assert rig.wd.run() == 0
    assert "error in health check: ConnectionRefusedError" in rig.stderr.getvalue()
    assert rig.stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"


# --- regressions: bugs found by these tests, now fixed -------------------------------------

def test_rpc_error_during_requeue_does_not_lose_the_crash(make_rig):
    rig = make_rig()
    rig.rpc.set_state("code_searcher", "EXITED")
    rig.rpc.fail("getProcessInfo", ConnectionRefusedError(111, "Connection refused"))
    stdin = fakes.process_event_text("PROCESS_STATE_EXITED", "code_searcher", "RUNNING",
                                     expected=0)
    rig.wd = rig.new_watchdog(stdin)
    assert rig.wd.run() == 0
    assert rig.due_in("code_searcher") == BASE


def test_a_team_launched_at_start_is_not_launched_again_by_the_running_event(make_rig):
    """main.py launches at start when policy.is_boot says so: supervisord's RUNNING event,
    which reaches the listener a startsecs later, must not start the agents a second time."""
    rig = make_rig()
    rig.wd = rig.new_watchdog(fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING"))
    assert rig.wd.run(launch=True) == 0
    assert rig.rpc.started() == [n for g in LAUNCH_ORDER for n in g]
    assert "failed" not in rig.stderr.getvalue()


def test_unknown_program_does_not_abort_the_launch(make_rig):
    agents = {"ghost": {"priority": 0}, **AGENTS}
    rig = make_rig(agents=agents)
    del rig.rpc.states["ghost"]  # not in supervisord's config
    rig.wd = rig.new_watchdog(fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING"))
    assert rig.wd.run() == 0
    assert rig.rpc.started() == ["ghost"] + [n for g in LAUNCH_ORDER for n in g]


def test_transient_rpc_failure_at_restart_time_is_retried(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.rpc.fail("startProcess", ConnectionRefusedError(111, "Connection refused"))
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.states["code_searcher"] == "EXITED"  # the failed attempt
    rig.clock.advance(BASE * 8)
    rig.wd.on_timer()
    restarted = rig.rpc.states["code_searcher"] in ("STARTING", "RUNNING")
    assert restarted or rig.notifications("CRITICAL")


def test_transient_database_error_does_not_kill_the_loop(make_rig, monkeypatch):
    rig = make_rig()
    rig.wd = rig.new_watchdog(fakes.event_text("TICK_5", when=1700000005))
    real = rig.queue.restart_state
    outage = {"calls": 3}

    def flaky(agent):
        if outage["calls"]:
            outage["calls"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return real(agent)

    monkeypatch.setattr(rig.queue, "restart_state", flaky)
    assert rig.wd.run() == 0
    assert rig.stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"


def test_health_check_escalates_waiting_work(health_rig):
    rig = health_rig
    rig.queue.escalate_after = 60.0  # what MessageQueue.from_team takes from team.escalate_after
    task_id = rig.queue.send("cli", "code_developer", "t", priority=5)
    check(rig)  # 30 s: not yet
    assert rig.queue.get_task(task_id)["priority"] == 5
    check(rig)  # 60 s
    assert rig.queue.get_task(task_id)["priority"] == 4
    assert [n["title"] for n in rig.notifications("INFO")] == [
        f"task {task_id} (t) escalated"]
