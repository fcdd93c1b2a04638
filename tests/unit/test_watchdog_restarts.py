"""The watchdog's restarts: crash, backoff, give-up, FATAL, the reset after a long run, restart
state that survives the listener, and the requeue of a dead agent's task.

Against a fake supervisord, a fake clock and a real SQLite queue (tests/watchdog_rig.py);
nothing here sleeps for real or starts a process.
"""
from __future__ import annotations

import pytest

from coffee_team.watchdog import listener as watchdog_module
from tests import fakes
from tests.watchdog_rig import AGENTS, BASE
from tests.watchdog_rig import make_rig, rig  # noqa: F401 (fixtures)


# --- crash, backoff, give-up -----------------------------------------------------------------

def test_crash_schedules_restart_after_base_delay_without_starting_yet(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    state = rig.restart_state("code_searcher")
    assert state["attempts"] == 1 and state["given_up"] is False
    assert rig.due_in("code_searcher") == BASE
    assert rig.rpc.started() == []
    scheduled = rig.events("code_searcher", "restart_scheduled")
    assert [(e["detail"]["delay"], e["detail"]["attempt"]) for e in scheduled] == [(BASE, 1)]

    rig.clock.advance(BASE - 0.01)
    rig.wd.on_timer()
    assert rig.rpc.started() == []

    rig.clock.advance(0.01)
    rig.wd.on_timer()
    assert rig.rpc.method_calls("startProcess") == [("startProcess", "code_searcher", False)]
    assert rig.restart_state("code_searcher")["next_restart_at"] is None
    restarted = rig.events("code_searcher", "restarted")
    assert len(restarted) == 1 and restarted[0]["detail"]["attempt"] == 1

    rig.clock.advance(BASE * 10)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_searcher"]  # fired once


def crash_and_restart(rig, name, expected_delay):
    rig.crash(name)
    assert rig.due_in(name) == expected_delay
    rig.clock.advance(expected_delay)
    rig.wd.on_timer()
    assert rig.rpc.states[name] == "STARTING"
    rig.bring_up(name)


def test_backoff_doubles_then_gives_up_once_on_the_fourth_crash(rig):
    rig.bring_up("code_searcher")
    for delay in (BASE, 2 * BASE, 4 * BASE):
        crash_and_restart(rig, "code_searcher", delay)
    assert rig.rpc.started() == ["code_searcher"] * 3
    assert rig.notifications() == []

    rig.crash("code_searcher")
    state = rig.restart_state("code_searcher")
    assert state["given_up"] is True and state["next_restart_at"] is None

    critical = rig.notifications("CRITICAL")
    assert len(critical) == 1 and len(rig.notifications()) == 1
    note = critical[0]
    assert note["agent"] == "code_searcher" and note["sound"] is False
    assert note["title"] == "code_searcher given up"
    assert "max restarts (3)" in note["message"] and "NOT restarting" in note["message"]

    tasks = rig.tasks()
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["sender"], task["recipient"], task["type"], task["priority"], task["status"]) == \
        ("watchdog", "project_manager", "agent_failed", 1, "pending")
    assert task["content"]["agent"] == "code_searcher"
    assert "max restarts" in task["content"]["reason"]
    assert len(rig.events("code_searcher", "given_up")) == 1

    # nothing more happens for this agent: no restarts, no repeated alarms
    rig.crash("code_searcher")
    rig.wd.handle(fakes.fatal("code_searcher"))
    rig.clock.advance(10**5)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_searcher"] * 3
    assert len(rig.notifications()) == 1 and len(rig.tasks()) == 1
    assert rig.wd.seconds_to_next_timer() == watchdog_module.MAX_IDLE_WAIT


def test_restart_attempt_numbers_and_delays_are_journaled(rig):
    rig.bring_up("code_searcher")
    for delay in (BASE, 2 * BASE, 4 * BASE):
        crash_and_restart(rig, "code_searcher", delay)
    scheduled = [(e["detail"]["attempt"], e["detail"]["delay"])
                 for e in rig.events("code_searcher", "restart_scheduled")]
    assert scheduled == [(1, BASE), (2, 2 * BASE), (3, 4 * BASE)]
    assert [e["detail"]["late_by"] for e in rig.events("code_searcher", "restarted")] == [0, 0, 0]


def test_max_restart_attempts_zero_gives_up_on_first_crash(make_rig):
    rig = make_rig(max_restart_attempts=0)
    rig.bring_up("architect")
    rig.crash("architect")
    assert rig.restart_state("architect")["given_up"] is True
    assert len(rig.notifications("CRITICAL")) == 1
    assert [t["type"] for t in rig.tasks("project_manager")] == ["agent_failed"]


@pytest.mark.parametrize("how", ["crashes", "fatal"])
def test_project_manager_given_up_gets_a_notification_but_no_task(make_rig, how):
    rig = make_rig(max_restart_attempts=0)
    if how == "crashes":
        rig.bring_up("project_manager")
        rig.crash("project_manager")
    else:
        rig.rpc.set_state("project_manager", "FATAL")
        rig.wd.handle(fakes.fatal("project_manager"))
    assert rig.restart_state("project_manager")["given_up"] is True
    critical = rig.notifications("CRITICAL")
    assert [(n["agent"], n["sound"]) for n in critical] == [("project_manager", False)]
    assert rig.tasks() == []


def test_team_without_project_manager_gives_up_with_notification_only(make_rig):
    agents = {k: v for k, v in AGENTS.items() if k != "project_manager"}
    rig = make_rig(agents=agents)
    rig.wd.handle(fakes.fatal("code_searcher"))
    assert len(rig.notifications("CRITICAL")) == 1
    assert rig.tasks() == []


def test_full_project_manager_queue_does_not_lose_the_notification(make_rig):
    rig = make_rig(max_queue_size=1)
    rig.queue.send("architect", "project_manager", "plan", {})
    rig.wd.handle(fakes.fatal("code_searcher"))
    assert len(rig.notifications("CRITICAL")) == 1
    assert [t["type"] for t in rig.tasks("project_manager")] == ["plan"]
    assert "agent_failed message not sent" in rig.stderr.getvalue()


def test_restart_delay_is_scheduled_from_the_crash_time_and_wakes_the_loop(make_rig):
    rig = make_rig(restart_backoff=0.5)
    rig.bring_up("architect")
    assert rig.wd.seconds_to_next_timer() == watchdog_module.MAX_IDLE_WAIT
    rig.crash("architect")
    assert rig.wd.seconds_to_next_timer() == 0.5
    rig.clock.advance(2)
    assert rig.wd.seconds_to_next_timer() == 0.0  # overdue: do not wait
    rig.wd.on_timer()
    assert rig.rpc.started() == ["architect"]
    assert rig.events("architect", "restarted")[0]["detail"]["late_by"] == 1.5


def test_two_agents_back_off_independently(rig):
    rig.bring_up("architect")
    rig.bring_up("code_searcher")
    crash_and_restart(rig, "architect", BASE)
    rig.crash("architect")                # 2nd crash: 2x
    rig.crash("code_searcher")            # 1st crash: 1x
    assert rig.due_in("architect") == 2 * BASE
    assert rig.due_in("code_searcher") == BASE
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["architect", "code_searcher"]
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["architect", "code_searcher", "architect"]


def test_running_again_before_the_due_time_cancels_the_pending_restart(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.bring_up("code_searcher", after=5)  # e.g. a human ran `supervisorctl start`
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    assert rig.restart_state("code_searcher")["attempts"] == 1  # the count still stands


# --- not crashes -----------------------------------------------------------------------------

def test_expected_exit_is_not_a_crash(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher", expected=True)
    state = rig.restart_state("code_searcher")
    assert state["attempts"] == 0 and state["next_restart_at"] is None
    assert rig.events("code_searcher", "crash") == []
    exited = rig.events("code_searcher", "exited")
    assert exited[0]["detail"]["expected"] is True
    rig.clock.advance(BASE * 10)
    rig.wd.on_timer()
    assert rig.rpc.started() == [] and rig.notifications() == []


def test_stopped_is_not_a_crash(rig):
    rig.bring_up("code_searcher")
    rig.rpc.set_state("code_searcher", "STOPPED")
    rig.wd.handle(fakes.stopped("code_searcher"))
    state = rig.restart_state("code_searcher")
    assert state["attempts"] == 0 and state["next_restart_at"] is None
    assert [e["kind"] for e in rig.events("code_searcher")] == ["running", "stopped"]
    rig.clock.advance(BASE * 10)
    rig.wd.on_timer()
    assert rig.rpc.started() == [] and rig.notifications() == []


def test_backoff_event_is_left_to_supervisord(rig):
    rig.rpc.set_state("code_searcher", "BACKOFF")
    rig.wd.handle(fakes.backoff("code_searcher"))
    assert rig.restart_state("code_searcher")["attempts"] == 0
    assert rig.rpc.method_calls("getProcessInfo") == []  # no requeue while supervisor retries
    assert [e["kind"] for e in rig.events("code_searcher")] == ["backoff"]


def test_exit_from_a_non_running_state_is_not_a_crash(rig):
    rig.rpc.set_state("code_searcher", "EXITED")
    rig.wd.handle(fakes.exited("code_searcher", from_state="STARTING"))
    assert rig.restart_state("code_searcher")["next_restart_at"] is None


@pytest.mark.parametrize("payload", [
    dict(processname="watchdog", groupname="watchdog"),          # the listener itself
    dict(processname="stranger", groupname="stranger"),          # not a team agent
    dict(processname="code_searcher", groupname="other_group"),  # same name, other group
])
def test_events_of_other_programs_are_ignored(rig, payload):
    rig.wd.handle(fakes.event("PROCESS_STATE_EXITED", **payload, from_state="RUNNING",
                              expected=0, pid=1))
    assert rig.rpc.calls == []
    assert rig.events() == []
    assert rig.restart_state("code_searcher")["attempts"] == 0


def test_other_event_types_are_ignored(rig):
    rig.wd.handle(fakes.event("TICK_5", when=1700000005))
    rig.wd.handle(fakes.event("SUPERVISOR_STATE_CHANGE_STOPPING"))
    assert rig.rpc.calls == [] and rig.events() == []


# --- FATAL -----------------------------------------------------------------------------------

def test_fatal_gives_up_at_once(rig):
    rig.rpc.set_state("code_developer", "FATAL")
    rig.wd.handle(fakes.fatal("code_developer"))
    state = rig.restart_state("code_developer")
    assert state["given_up"] is True and state["next_restart_at"] is None
    critical = rig.notifications("CRITICAL")
    assert len(critical) == 1 and critical[0]["sound"] is False
    assert "FATAL" in critical[0]["message"]
    assert [(t["type"], t["priority"]) for t in rig.tasks("project_manager")] == \
        [("agent_failed", 1)]
    rig.wd.handle(fakes.fatal("code_developer"))
    assert len(rig.notifications()) == 1 and len(rig.tasks()) == 1
    rig.clock.advance(10**5)
    rig.wd.on_timer()
    assert rig.rpc.started() == []


def test_fatal_during_a_pending_backoff_cancels_it(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.wd.handle(fakes.fatal("code_searcher"))
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    assert len(rig.notifications("CRITICAL")) == 1


# --- reset after a long enough run -----------------------------------------------------------

def test_crash_after_running_reset_after_seconds_starts_over_at_1x(rig):
    rig.bring_up("code_searcher")
    crash_and_restart(rig, "code_searcher", BASE)
    crash_and_restart(rig, "code_searcher", 2 * BASE)
    rig.clock.advance(rig.team.settings.restart_reset_after)  # ran exactly reset_after
    rig.crash("code_searcher")
    assert rig.due_in("code_searcher") == BASE
    assert rig.restart_state("code_searcher")["attempts"] == 1


def test_crash_just_before_reset_after_keeps_counting(rig):
    rig.bring_up("code_searcher")
    crash_and_restart(rig, "code_searcher", BASE)
    rig.clock.advance(rig.team.settings.restart_reset_after - 1.0)  # bring_up added 1 s
    rig.crash("code_searcher")
    assert rig.due_in("code_searcher") == 2 * BASE  # ran 599 s: not long enough


def test_an_agent_that_runs_long_between_crashes_is_never_given_up(rig):
    rig.bring_up("code_searcher")
    for _ in range(8):
        rig.clock.advance(rig.team.settings.restart_reset_after)
        crash_and_restart(rig, "code_searcher", BASE)
    assert rig.notifications() == []
    assert rig.restart_state("code_searcher")["given_up"] is False


# --- restart state survives the listener ----------------------------------------------------

def test_pending_restart_fires_from_a_new_watchdog_on_the_same_database(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    due_at = rig.restart_state("code_searcher")["next_restart_at"]

    # supervisord kills and respawns the listener: new process, new connection, new memory
    rig.queue.close()
    rig.queue = rig.open_queue()
    rig.wd = rig.new_watchdog()

    rig.clock.advance(BASE / 2)
    rig.wd.on_timer()
    assert rig.rpc.started() == []
    rig.clock.set(due_at)
    rig.wd.on_timer()
    assert rig.rpc.started() == ["code_searcher"]

    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    assert rig.due_in("code_searcher") == 2 * BASE  # the count survived too


def test_given_up_survives_a_new_watchdog(rig):
    rig.wd.handle(fakes.fatal("code_searcher"))
    rig.queue.close()
    rig.queue = rig.open_queue()
    rig.wd = rig.new_watchdog()
    rig.wd.handle(fakes.supervisor_running())
    assert "code_searcher" not in rig.rpc.started()
    rig.crash("code_searcher")
    assert len(rig.notifications("CRITICAL")) == 1


def test_new_watchdog_launch_leaves_a_pending_restart_to_the_backoff(rig):
    rig.bring_up("code_searcher")
    rig.crash("code_searcher")
    rig.queue.close()
    rig.queue = rig.open_queue()
    rig.wd = rig.new_watchdog()
    rig.wd.handle(fakes.supervisor_running())
    assert "code_searcher" not in rig.rpc.started()
    rig.clock.advance(BASE)
    rig.wd.on_timer()
    assert rig.rpc.started().count("code_searcher") == 1


# --- requeue ---------------------------------------------------------------------------------

def claimed_task(rig, agent="code_developer"):
    task_id = rig.queue.send("architect", agent, "implement_priority", {"n": 1})
    [task] = rig.queue.claim(agent)
    assert task.id == task_id
    return task_id


def task_status(rig, task_id):
    return {t["id"]: t["status"] for t in rig.tasks()}[task_id]


@pytest.mark.parametrize("dead_state, event", [
    ("EXITED", lambda n: fakes.exited(n)),
    ("EXITED", lambda n: fakes.exited(n, expected=True)),
    ("STOPPED", fakes.stopped),
    ("FATAL", fakes.fatal),
])
def test_dead_agents_in_progress_task_goes_back_to_pending(rig, dead_state, event):
    rig.bring_up("code_developer")
    task_id = claimed_task(rig)
    rig.rpc.set_state("code_developer", dead_state)
    rig.wd.handle(event("code_developer"))
    assert task_status(rig, task_id) == "pending"
    requeued = rig.events("code_developer", "requeued")
    assert [e["detail"]["count"] for e in requeued] == [1]
    assert "requeued 1 task(s) of code_developer" in rig.stderr.getvalue()


@pytest.mark.parametrize("live_state", ["RUNNING", "STARTING"])
def test_task_of_an_agent_already_back_up_is_not_requeued(rig, live_state):
    rig.bring_up("code_developer")
    task_id = claimed_task(rig)
    rig.rpc.set_state("code_developer", live_state)  # a new instance is up before we looked
    rig.wd.handle(fakes.exited("code_developer"))
    assert task_status(rig, task_id) == "in_progress"
    assert rig.events("code_developer", "requeued") == []
    assert rig.due_in("code_developer") == BASE  # the crash itself still counts


def test_requeue_only_touches_the_dead_agents_tasks(rig):
    mine = claimed_task(rig, "code_developer")
    theirs = claimed_task(rig, "architect")
    rig.crash("code_developer")
    assert task_status(rig, mine) == "pending"
    assert task_status(rig, theirs) == "in_progress"


def test_backoff_does_not_requeue(rig):
    task_id = claimed_task(rig)
    rig.rpc.set_state("code_developer", "BACKOFF")
    rig.wd.handle(fakes.backoff("code_developer"))
    assert task_status(rig, task_id) == "in_progress"
