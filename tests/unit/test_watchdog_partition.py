"""Issue 26 (partitions): the watchdog loop never waits on the database. Its queue calls run
on dbworker.PatientQueue's thread; while the database does not answer, restart state comes
from memory, a crashed agent is restarted on time, and what the loop wrote is written once the
database answers again. The database "does not answer" here through Gate: every call waits
until the gate opens (what a partition does to a connection)."""
from __future__ import annotations

import threading
import time

import pytest

from coffee_team.errors import DatabaseUnavailable
from coffee_team.watchdog.dbworker import PatientQueue
from tests.watchdog_rig import BASE
from tests.watchdog_rig import make_rig  # noqa: F401 (a fixture)

PATIENCE = 0.05


class Gate:
    """``queue``'s methods, each waiting while the gate is shut."""

    def __init__(self, queue):
        self.queue = queue
        self.open = threading.Event()
        self.open.set()
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self.queue, name)
        if not callable(attr):
            return attr

        def gated(*args, **kwargs):
            self.calls.append(name)
            assert self.open.wait(10), "the gate stayed shut"
            return attr(*args, **kwargs)
        return gated


def settle(patient, timeout=5.0):
    deadline = time.monotonic() + timeout
    while patient.pending() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert patient.pending() == 0


@pytest.fixture
def cut(make_rig):  # noqa: F811
    rig = make_rig()
    gate = Gate(rig.queue)
    patient = PatientQueue(gate, lambda line: rig.wd.log(line), patience=PATIENCE)
    rig.wd = rig.new_watchdog(queue=patient)
    return rig, gate, patient


def test_a_crash_during_a_partition_is_restarted_on_time_and_written_after(cut):
    rig, gate, patient = cut
    rig.wd.on_timer()  # reads every restart state: known from here on
    rig.bring_up("architect")
    settle(patient)
    gate.open.clear()  # the partition
    started = time.monotonic()
    rig.crash("architect")
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    took = time.monotonic() - started
    assert rig.rpc.started().count("architect") == 1  # restarted, the database still away
    assert took < 1.0  # the loop waited for no statement longer than its patience
    err = rig.stderr.getvalue()
    assert err.count("database unavailable") == 1 and "hung" not in err
    gate.open.set()  # heal: what the loop wrote meanwhile is written, in order
    settle(patient)
    state = rig.restart_state("architect")
    assert state["attempts"] == 1 and state["next_restart_at"] is None  # issued
    kinds = [e["kind"] for e in rig.events("architect")]
    assert kinds[-3:] == ["crash", "restart_scheduled", "restarted"]
    rig.wd.on_timer()
    assert "database answers again" in rig.stderr.getvalue()


def test_calls_fail_at_once_while_one_is_stuck_and_writes_wait(make_rig):  # noqa: F811
    rig = make_rig()
    gate = Gate(rig.queue)
    lines: list[str] = []
    patient = PatientQueue(gate, lines.append, patience=PATIENCE)
    gate.open.clear()
    with pytest.raises(DatabaseUnavailable, match="did not answer"):
        patient.restart_state("architect")
    time.sleep(PATIENCE)  # the worker is inside that call for longer than its patience
    before = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="has not answered"):
        patient.restart_states(["architect"])
    assert time.monotonic() - before < PATIENCE  # at once: not queued behind the stuck call
    assert gate.calls == ["restart_state"]
    assert patient.save_restart_state("architect", attempts=2) is None  # posted
    gate.open.set()
    settle(patient)
    assert rig.queue.restart_state("architect")["attempts"] == 2
    assert patient.restart_state("architect")["attempts"] == 2  # reads see earlier writes


def test_a_posted_write_is_retried_while_the_database_is_away_and_dropped_if_refused(make_rig):  # noqa: F811,E501
    rig = make_rig()
    lines: list[str] = []
    failures = [DatabaseUnavailable("no route to host")] * 2

    class Flaky:
        def __getattr__(self, name):
            attr = getattr(rig.queue, name)

            def call(*args, **kwargs):
                if name == "record_event" and failures:
                    raise failures.pop()
                if name == "notify":
                    raise ValueError("refused")
                return attr(*args, **kwargs)
            return call

    patient = PatientQueue(Flaky(), lines.append, patience=PATIENCE)
    patient.record_event("architect", "crash", attempt=1)
    patient.notify("WARNING", "architect", "t", "b")
    settle(patient)
    assert [e["kind"] for e in rig.queue.events(agent="architect")] == ["crash"]
    assert len(lines) == 3 and "waits for the database" in lines[0]
    assert "written" in lines[1] and "notify not written: ValueError" in lines[2]


# --- a heartbeat that stopped while it said it waits for the database -----------------------

def test_a_hang_while_waiting_for_the_database_restarts_without_counting(make_rig):  # noqa: F811
    from coffee_team.heartbeat import heartbeat_path
    from tests import fakes
    from tests.watchdog_rig import HEALTH, check
    rig = make_rig(**HEALTH)
    rig.rpc.set_state("code_developer", "RUNNING")
    rig.queue.save_restart_state("code_developer", attempts=2)  # one more would be max - 0
    heartbeat_path(rig.team.status_dir, "code_developer").write_text(
        '{"agent": "code_developer", "last_heartbeat": %f, "waiting_for": "database"}'
        % (rig.clock() + 30 - 700))
    check(rig)
    assert rig.rpc.method_calls("stopProcess") == [("stopProcess", "code_developer", False)]
    assert "hung while waiting for the database" in rig.stderr.getvalue()
    rig.rpc.settle()
    rig.wd.handle(fakes.stopped("code_developer"))
    state = rig.restart_state("code_developer")
    assert state["attempts"] == 2 and not state["given_up"]  # not counted
    assert rig.due_in("code_developer") == BASE * 4  # the backoff its count gives
    rig.clock.advance(BASE * 4)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_developer"]


def test_uncounted_exit_is_a_pure_rule():
    from coffee_team.restarts import RestartPolicy, RestartState, on_exit
    policy = RestartPolicy(base_delay=10, max_attempts=3)
    state, decision = on_exit(RestartState(attempts=3), 100.0, policy, counted=False)
    assert decision.kind == "restart" and decision.delay == 80 and state.attempts == 3
    assert not state.given_up and state.next_restart_at == 180.0
    state, decision = on_exit(RestartState(attempts=3), 100.0, policy)
    assert decision.kind == "give_up"  # counted, as ever
