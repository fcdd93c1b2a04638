"""The watchdog's pure rules, checked at their exact boundaries (no clocks, no sleeps)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_team.restarts import Decision, RestartPolicy, RestartState, backoff_delay, due_restarts, launch_groups, next_wakeup, on_cleared, on_exit, on_fatal, on_hang, on_restart_issued, on_restart_unanswered, on_running, on_stop_requested, on_stopped
from coffee_team.watchdog.policy import heartbeat_status, is_boot, is_crash, MAY_BECOME_READY, GroupWait, group_wait, resource_findings, should_warn, started_since

T0 = 1_700_000_000.0
EPS = 1e-6


def crash_after_uptime(state, started_at, uptime, policy):
    """The agent reaches RUNNING at ``started_at`` and crashes ``uptime`` seconds later."""
    return on_exit(on_running(state, started_at), started_at + uptime, policy)


# --- backoff_delay -------------------------------------------------------------------------

@pytest.mark.parametrize("base, expected", [(1, [1, 2, 4, 8]), (60, [60, 120, 240, 480])])
def test_backoff_doubles_from_base(base, expected):
    assert [backoff_delay(attempt, base) for attempt in range(4)] == expected


@pytest.mark.parametrize("attempt", [-1, 1.5, True, "1"])
def test_backoff_rejects_bad_attempt(attempt):
    with pytest.raises(ValueError):
        backoff_delay(attempt, 60)


@pytest.mark.parametrize("base", [-1, float("inf"), float("nan")])
def test_backoff_rejects_bad_base(base):
    with pytest.raises(ValueError):
        backoff_delay(0, base)


@pytest.mark.parametrize(
    "kwargs", [{"base_delay": -1}, {"max_attempts": -1}, {"max_attempts": 1.5}, {"reset_after": float("nan")}]
)
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)


def test_decision_rejects_unknown_kind():
    with pytest.raises(ValueError):
        Decision("reboot")


# --- on_running / on_exit ------------------------------------------------------------------

def test_on_running_remembers_start_and_clears_pending_restart():
    state = on_running(RestartState(attempts=2, next_restart_at=T0 + 5), T0)
    assert state == RestartState(attempts=2, next_restart_at=None, running_since=T0)


@pytest.mark.parametrize("base", [1.0, 60.0])
def test_restarts_are_scheduled_at_1x_2x_4x_base_then_give_up(base):
    policy = RestartPolicy(base_delay=base, max_attempts=3, reset_after=600)
    state, now = RestartState(), T0
    for attempt, multiple in enumerate([1, 2, 4], start=1):
        state, decision = crash_after_uptime(state, now, 10, policy)
        crash_time = now + 10
        assert decision == Decision("restart", delay=base * multiple, due_at=crash_time + base * multiple, attempt=attempt)
        assert state.attempts == attempt
        assert state.next_restart_at == crash_time + base * multiple
        assert state.last_crash_at == crash_time
        assert state.running_since is None
        assert not state.given_up
        now = state.next_restart_at
    state, decision = crash_after_uptime(state, now, 10, policy)
    assert decision == Decision("give_up", attempt=3)
    assert state.given_up and state.next_restart_at is None and state.attempts == 3


@pytest.mark.parametrize("max_attempts", [0, 1, 2, 5])
def test_gives_up_exactly_after_max_attempts_restarts(max_attempts):
    policy = RestartPolicy(base_delay=1, max_attempts=max_attempts, reset_after=600)
    state, kinds = RestartState(), []
    for crash in range(max_attempts + 2):
        state, decision = on_exit(state, T0 + crash * 1000, policy)
        kinds.append(decision.kind)
    assert kinds == ["restart"] * max_attempts + ["give_up", "ignore"]


def test_given_up_state_is_left_alone_by_further_exits():
    given_up = RestartState(attempts=3, given_up=True, last_crash_at=T0)
    state, decision = on_exit(given_up, T0 + 50, RestartPolicy())
    assert state is given_up
    assert decision == Decision("ignore", attempt=3)


def test_exit_without_running_event_still_counts():
    # e.g. the watchdog restarted itself and never saw RUNNING: no uptime means no reset.
    state, decision = on_exit(RestartState(attempts=2), T0, RestartPolicy(base_delay=60))
    assert decision.kind == "restart" and decision.delay == 240 and state.attempts == 3


@pytest.mark.parametrize(
    "uptime, resets",
    [(600 - EPS, False), (600.0, True), (600 + EPS, True), (0.0, False), (10_000.0, True)],
)
def test_attempts_reset_after_running_reset_after_seconds(uptime, resets):
    policy = RestartPolicy(base_delay=60, max_attempts=3, reset_after=600)
    exhausted = RestartState(attempts=3, last_crash_at=T0 - 1)
    state, decision = crash_after_uptime(exhausted, T0, uptime, policy)
    if resets:
        assert decision == Decision("restart", delay=60, due_at=T0 + uptime + 60, attempt=1)
        assert state.attempts == 1
    else:
        assert decision.kind == "give_up"


def test_reset_applies_to_a_partially_used_budget_too():
    policy = RestartPolicy(base_delay=60, max_attempts=3, reset_after=600)
    state, decision = crash_after_uptime(RestartState(attempts=2), T0, 600, policy)
    assert decision.delay == 60 and state.attempts == 1


def test_clock_going_backwards_does_not_reset():
    policy = RestartPolicy(max_attempts=3, reset_after=600)
    state, decision = on_exit(RestartState(attempts=3, running_since=T0), T0 - 10_000, policy)
    assert decision.kind == "give_up"


# --- on_fatal / on_cleared -----------------------------------------------------------------

def test_fatal_gives_up_without_backoff():
    running = on_running(RestartState(attempts=1), T0)
    state, decision = on_fatal(running, T0 + 5, RestartPolicy())
    assert decision == Decision("give_up", attempt=1)
    assert state == RestartState(attempts=1, given_up=True, last_crash_at=T0 + 5)


def test_fatal_gives_up_even_with_budget_left_and_cancels_pending_restart():
    state, decision = on_fatal(RestartState(attempts=0, next_restart_at=T0 + 60), T0, RestartPolicy())
    assert decision.kind == "give_up" and state.given_up and state.next_restart_at is None


def test_fatal_on_given_up_agent_is_ignored():
    given_up = RestartState(attempts=3, given_up=True)
    assert on_fatal(given_up, T0, RestartPolicy()) == (given_up, Decision("ignore", attempt=3))


def test_cleared_restores_the_full_budget():
    policy = RestartPolicy(base_delay=60, max_attempts=3)
    given_up = RestartState(attempts=3, given_up=True, last_crash_at=T0, running_since=None)
    cleared = on_cleared(given_up)
    assert cleared == RestartState(attempts=0, given_up=False, next_restart_at=None, last_crash_at=T0)
    _, decision = on_exit(cleared, T0 + 1, policy)
    assert decision == Decision("restart", delay=60, due_at=T0 + 61, attempt=1)


def test_cleared_cancels_a_pending_backoff_restart():
    assert on_cleared(RestartState(attempts=1, next_restart_at=T0)).next_restart_at is None


# --- persistence ---------------------------------------------------------------------------

def test_state_round_trips_through_db_columns():
    state = RestartState(attempts=2, next_restart_at=T0 + 1.5, given_up=True, running_since=T0,
                         last_crash_at=T0 + 1, hang_restart=True)
    row = state.to_dict()
    assert set(row) == {"attempts", "next_restart_at", "given_up", "running_since", "last_crash_at",
                        "hang_restart"}
    assert RestartState.from_dict(row) == state


def test_from_dict_coerces_sqlite_types_and_ignores_extra_columns():
    row = {"agent": "barista", "attempts": 1, "given_up": 0, "next_restart_at": 1700000060, "running_since": None}
    assert RestartState.from_dict(row) == RestartState(attempts=1, next_restart_at=1700000060.0)
    assert RestartState.from_dict({}) == RestartState()
    assert RestartState.from_dict({"given_up": 1}).given_up is True


# --- due_restarts / next_wakeup ------------------------------------------------------------

STATES = {
    "late": RestartState(attempts=1, next_restart_at=T0 - 10),
    "now": RestartState(attempts=1, next_restart_at=T0),
    "also_late": RestartState(attempts=1, next_restart_at=T0 - 10),
    "earliest": RestartState(attempts=1, next_restart_at=T0 - 30),
    "future": RestartState(attempts=1, next_restart_at=T0 + 0.5),
    "given_up": RestartState(attempts=3, next_restart_at=T0 - 100, given_up=True),
    "running": RestartState(running_since=T0 - 5),
}


def test_due_restarts_sorted_by_due_time_then_name():
    assert due_restarts(STATES, T0) == ["earliest", "also_late", "late", "now"]


def test_due_restarts_boundary():
    single = {"a": RestartState(next_restart_at=T0)}
    assert due_restarts(single, T0 - EPS) == []
    assert due_restarts(single, T0) == ["a"]


def test_next_wakeup_is_time_to_earliest_pending_restart():
    future_only = {k: v for k, v in STATES.items() if k in {"future", "running", "given_up"}}
    assert next_wakeup(future_only, T0) == pytest.approx(0.5)
    assert next_wakeup(STATES, T0) == 0.0  # overdue restarts mean "wake now", never negative
    assert next_wakeup({"running": STATES["running"], "given_up": STATES["given_up"]}, T0) is None
    assert next_wakeup({}, T0) is None


# --- heartbeats ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "age, status",
    [
        (-5, "fresh"),  # heartbeat stamped slightly in the future: clock skew, not a problem
        (0, "fresh"),
        (30, "fresh"),
        (30 + EPS, "stale"),
        (60, "stale"),
        (60 + EPS, "hung"),
        (10_000, "hung"),
    ],
)
def test_heartbeat_status_boundaries(age, status):
    assert heartbeat_status(T0 - age, T0, stale_after=30) == status


def test_heartbeat_never_seen_is_missing():
    assert heartbeat_status(None, T0, 30) == "missing"


@pytest.mark.parametrize("stale_after", [0, -1, float("inf"), float("nan")])
def test_heartbeat_rejects_bad_stale_after(stale_after):
    with pytest.raises(ValueError):
        heartbeat_status(T0, T0, stale_after)


@pytest.mark.parametrize(
    "previous, new, warn",
    [
        (None, "fresh", False),
        (None, "stale", True),
        (None, "missing", True),
        (None, "hung", True),
        ("fresh", "fresh", False),
        ("fresh", "stale", True),
        ("fresh", "missing", True),
        ("fresh", "hung", True),
        ("stale", "stale", False),
        ("stale", "hung", True),  # escalation is news
        ("stale", "missing", False),
        ("stale", "fresh", False),
        ("hung", "hung", False),
        ("hung", "stale", False),
        ("hung", "fresh", False),
        ("missing", "missing", False),
        ("missing", "stale", False),
        ("missing", "hung", True),
    ],
)
def test_should_warn_on_entering_or_escalating_an_episode(previous, new, warn):
    assert should_warn(previous, new) is warn


def test_warns_once_per_stale_episode():
    statuses = ["fresh", "stale", "stale", "stale", "fresh", "fresh", "stale", "hung", "hung", "fresh"]
    previous, warnings = None, []
    for index, status in enumerate(statuses):
        if should_warn(previous, status):
            warnings.append(index)
        previous = status
    assert warnings == [1, 6, 7]


def test_should_warn_rejects_unknown_status():
    with pytest.raises(ValueError):
        should_warn("fresh", "sleepy")


# --- resources -----------------------------------------------------------------------------

def test_resource_findings_quiet_when_under_thresholds():
    assert resource_findings(80.0, 256.0) == ([], 0, False)


def test_resource_findings_format():
    warnings, _, _ = resource_findings(87.34, 312.4)
    assert [(w.kind, w.text) for w in warnings] == [
        ("high_cpu", "high CPU usage (87.3%)"), ("high_memory", "high memory usage (312MB)")]


def test_resource_thresholds_are_configurable():
    assert [w.text for w in resource_findings(50.0, 100.0, cpu_threshold=40,
                                              rss_threshold=99)[0]] == [
        "high CPU usage (50.0%)",
        "high memory usage (100MB)",
    ]


def test_memory_limit_needs_two_checks_in_a_row():
    limit = {"memory_limit_mb": 300}
    _, streak, due = resource_findings(1.0, 301.0, **limit)
    assert (streak, due) == (1, False)
    _, streak, due = resource_findings(1.0, 299.0, over_limit_streak=streak, **limit)
    assert (streak, due) == (0, False)  # a dip below the limit breaks the streak
    _, streak, due = resource_findings(1.0, 301.0, over_limit_streak=streak, **limit)
    _, streak, due = resource_findings(1.0, 301.0, over_limit_streak=streak, **limit)
    assert due is True
    assert streak == 0  # the restart consumes the streak: no second restart for this episode


def test_memory_limit_boundary_is_strictly_over():
    assert resource_findings(1.0, 300.0, memory_limit_mb=300, over_limit_streak=1)[1:] == (0, False)


def test_no_memory_limit_means_no_streak():
    assert resource_findings(1.0, 10_000.0, over_limit_streak=5)[1:] == (0, False)


def test_memory_limit_must_be_positive():
    with pytest.raises(ValueError):
        resource_findings(1.0, 1.0, memory_limit_mb=0)


# --- is_crash ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "from_state, expected, stopping, to_state, crash",
    [
        ("RUNNING", False, False, "EXITED", True),
        ("RUNNING", True, False, "EXITED", False),  # exit code listed in exitcodes
        ("RUNNING", False, True, "EXITED", False),  # our own restart/stop
        ("RUNNING", False, False, "PROCESS_STATE_EXITED", True),
        ("STARTING", False, False, "BACKOFF", True),
        ("STARTING", False, True, "BACKOFF", False),
        ("RUNNING", True, False, "STOPPING", False),
        ("STOPPING", False, False, "STOPPED", False),
        ("STOPPING", False, False, "PROCESS_STATE_STOPPED", False),
        ("STARTING", False, False, "RUNNING", False),
        ("BACKOFF", False, False, "FATAL", False),  # FATAL goes through on_fatal
    ],
)
def test_is_crash(from_state, expected, stopping, to_state, crash):
    assert is_crash(from_state, expected, stopping, to_state=to_state) is crash


def test_is_crash_defaults_to_exited_event():
    assert is_crash("RUNNING", False, False) is True
    assert is_crash("RUNNING", True, False) is False


# --- launch_groups -------------------------------------------------------------------------

def test_launch_groups_by_ascending_priority_names_sorted():
    priorities = {"waiter": 10, "barista": 1, "cashier": 5, "roaster": 1, "baker": 5, "manager": 999}
    assert launch_groups(priorities) == [["barista", "roaster"], ["baker", "cashier"], ["waiter"], ["manager"]]


def test_launch_groups_edge_cases():
    assert launch_groups({}) == []
    assert launch_groups({"solo": -3}) == [["solo"]]


# --- the boot's readiness rule --------------------------------------------------------------

SUPERVISOR_STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL",
                     "UNKNOWN", None)  # None: not seen yet


def test_started_since_counts_only_a_heartbeat_of_an_instance_started_at_or_after_the_launch():
    assert started_since({"started_at": 100.0, "last_heartbeat": 100.2}, 100.0)
    assert started_since({"started_at": 100.5, "last_heartbeat": 101}, 100.0)
    assert not started_since({"started_at": 99.999, "last_heartbeat": 101.0}, 100.0)  # earlier one
    assert not started_since({"started_at": 100.5}, 100.0)  # no beat written
    assert not started_since({"started_at": 100.5, "last_heartbeat": None}, 100.0)
    for junk in ({}, {"started_at": None, "last_heartbeat": 1}, {"started_at": "101",
                 "last_heartbeat": 1}, {"started_at": True, "last_heartbeat": 1}):
        assert not started_since(junk, 0.0), junk


@pytest.mark.parametrize("state", SUPERVISOR_STATES)
@pytest.mark.parametrize("ready", [False, True])
@pytest.mark.parametrize("not_started", [False, True])
def test_group_wait_for_one_member_in_every_combination(state, ready, not_started):
    states = {} if state is None else {"a": state}
    awaited = not ready and not not_started and (state is None or state in MAY_BECOME_READY)
    for now, left in ((10.0, 5.0), (14.999, 0.001)):
        wait = group_wait(["a"], {"a"} if ready else set(), states,
                          {"a"} if not_started else set(), 10.0, now, 5.0)
        if awaited:
            assert wait == GroupWait(False, ("a",), False, pytest.approx(left))
        else:
            assert wait == GroupWait(True, (), False, 0.0)
    at_deadline = group_wait(["a"], {"a"} if ready else set(), states,
                             {"a"} if not_started else set(), 10.0, 15.0, 5.0)
    expected = GroupWait(True, ("a",), True, 0.0) if awaited else GroupWait(True, (), False, 0.0)
    assert at_deadline == expected


def test_may_become_ready_is_starting_running_and_backoff():
    # BACKOFF: supervisord retries (startretries) and the next try may get ready
    assert MAY_BECOME_READY == {"STARTING", "RUNNING", "BACKOFF"}


def test_group_wait_names_the_members_still_awaited_in_group_order():
    group = ["c", "a", "b", "d"]
    wait = group_wait(group, {"a"}, {"d": "FATAL"}, set(), 0.0, 1.0, 10.0)
    assert wait == GroupWait(False, ("c", "b"), False, 9.0)
    assert group_wait(group, {"a", "b", "c"}, {"d": "FATAL"}, set(), 0.0, 1.0, 10.0).done
    assert group_wait([], set(), {}, set(), 0.0, 0.0, 10.0) == GroupWait(True, (), False, 0.0)


def test_group_wait_ends_when_the_clock_went_back_past_the_launch():
    """Else one wait could last as long as the clock went back (an NTP step at boot)."""
    assert group_wait(["a"], set(), {}, set(), 100.0, 99.9, 10.0) == \
        GroupWait(True, ("a",), True, 0.0)
    assert group_wait(["a"], set(), {}, set(), 100.0, 100.0, 10.0) == \
        GroupWait(False, ("a",), False, 10.0)


def test_group_wait_with_no_time_at_all_gives_up_on_the_spot():
    assert group_wait(["a"], set(), {}, set(), 5.0, 5.0, 0.0) == GroupWait(True, ("a",), True, 0.0)
    with pytest.raises(ValueError):
        group_wait(["a"], set(), {}, set(), 5.0, 5.0, -1.0)
    with pytest.raises(ValueError):
        group_wait(["a"], set(), {}, set(), 5.0, 5.0, float("nan"))


@given(st.dictionaries(st.sampled_from("abcdef"), st.tuples(
           st.booleans(), st.booleans(), st.sampled_from(SUPERVISOR_STATES)), max_size=6),
       st.floats(0, 100), st.floats(0, 50))
def test_group_wait_is_done_exactly_when_nobody_is_awaited_or_time_is_up(members, now, timeout):
    group = sorted(members)
    ready = {n for n, (r, _, _) in members.items() if r}
    not_started = {n for n, (_, f, _) in members.items() if f}
    states = {n: s for n, (_, _, s) in members.items() if s is not None}
    wait = group_wait(group, ready, states, not_started, 0.0, now, timeout)
    awaited = [n for n in group if n not in ready | not_started
               and states.get(n, "STARTING") in MAY_BECOME_READY]
    assert wait.done == (not awaited or now >= timeout)
    assert wait.timed_out == (bool(awaited) and now >= timeout)
    assert list(wait.not_ready) == awaited
    assert wait.remaining == (0.0 if wait.done else timeout - now)


# --- properties ----------------------------------------------------------------------------

policies = st.builds(
    RestartPolicy,
    base_delay=st.floats(min_value=0.001, max_value=3600),
    max_attempts=st.integers(min_value=0, max_value=8),
    reset_after=st.floats(min_value=1, max_value=86_400),
)


@settings(max_examples=200, deadline=None)
@given(policy=policies, uptime_fractions=st.lists(st.floats(min_value=0, max_value=0.999), max_size=20))
def test_short_lived_crashes_never_exceed_max_attempts(policy, uptime_fractions):
    """Without a long enough run, restarts are bounded and their delays never shrink."""
    state, now, delays = RestartState(), T0, []
    for fraction in uptime_fractions:
        state, decision = crash_after_uptime(state, now, fraction * policy.reset_after, policy)
        if decision.kind == "restart":
            delays.append(decision.delay)
            assert decision.due_at == state.next_restart_at
            now = decision.due_at
        else:
            assert state.given_up
    assert len(delays) <= policy.max_attempts
    assert delays == sorted(delays)
    if len(uptime_fractions) > policy.max_attempts:
        assert state.given_up


@settings(max_examples=200, deadline=None)
@given(policy=policies, extra=st.floats(min_value=0, max_value=1e6))
def test_a_long_run_always_buys_a_first_restart(policy, extra):
    if policy.max_attempts == 0:
        return
    exhausted = RestartState(attempts=policy.max_attempts)
    # Start at 0 so the uptime is exact: this property is about the rule, not float rounding.
    _, decision = crash_after_uptime(exhausted, 0.0, policy.reset_after + extra, policy)
    assert decision.kind == "restart" and decision.attempt == 1 and decision.delay == policy.base_delay


optional_times = st.none() | st.floats(min_value=0, max_value=2e9)
states = st.builds(
    RestartState,
    attempts=st.integers(min_value=0, max_value=100),
    next_restart_at=optional_times,
    given_up=st.booleans(),
    running_since=optional_times,
    last_crash_at=optional_times,
)


@given(states)
def test_round_trip_property(state):
    assert RestartState.from_dict(state.to_dict()) == state


@given(st.dictionaries(st.text(min_size=1, max_size=5), states, max_size=8), st.floats(min_value=0, max_value=2e9))
def test_next_wakeup_agrees_with_due_restarts(states_by_name, now):
    wait = next_wakeup(states_by_name, now)
    due = due_restarts(states_by_name, now)
    if wait is None:
        assert due == []
    else:
        assert wait >= 0
        assert bool(due) == (wait == 0)


@given(st.floats(min_value=-1e6, max_value=1e6), st.floats(min_value=0, max_value=1e6), st.floats(min_value=0.01, max_value=1e4))
def test_heartbeat_status_only_worsens_with_age(last_heartbeat, extra_age, stale_after):
    rank = {"fresh": 0, "stale": 1, "hung": 2}
    now = last_heartbeat + 1
    earlier = heartbeat_status(last_heartbeat, now, stale_after)
    later = heartbeat_status(last_heartbeat, now + extra_age, stale_after)
    assert rank[later] >= rank[earlier]


def test_max_delay_caps_the_exponential_schedule():
    from coffee_team import restarts
    policy_ = restarts.RestartPolicy(base_delay=1.0, max_attempts=10, reset_after=600.0,
                                     max_delay=5.0)
    state, delays = restarts.RestartState(), []
    for i in range(8):
        state, decision = restarts.on_exit(state, 100.0 + i, policy_)
        delays.append(decision.delay)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0]


def test_restart_state_fields_are_the_schema_columns():
    from dataclasses import fields

    from peewee import BooleanField

    from coffee_team.queue.journal import RESTART_FIELDS
    from coffee_team.queue.models import RestartState as Model
    from coffee_team.queue.tables import RESTART_BOOL_FIELDS
    declared = {f.name: f.default for f in fields(RestartState)}
    assert declared == RESTART_FIELDS
    columns = {name: f for name, f in Model._meta.fields.items() if name not in ("agent", "host")}
    assert {name: f.default for name, f in columns.items()} == RESTART_FIELDS
    assert RESTART_BOOL_FIELDS == tuple(n for n, f in columns.items() if isinstance(f, BooleanField))


def test_hang_stop_is_a_crash_and_a_requested_stop_is_not():
    policy = RestartPolicy(base_delay=10, max_attempts=3)
    assert on_stopped(RestartState(running_since=T0), T0 + 5, policy) is None
    state, decision = on_stopped(on_hang(RestartState(running_since=T0)), T0 + 5, policy)
    assert decision.kind == "restart" and decision.due_at == T0 + 15
    assert state.hang_restart is False and state.attempts == 1


def test_human_decisions_clear_the_backoff():
    pending = RestartState(attempts=2, next_restart_at=T0 + 40, given_up=False)
    assert on_stop_requested(pending) == RestartState(attempts=2)
    assert on_cleared(RestartState(attempts=3, given_up=True)) == RestartState()
    assert on_restart_issued(pending).next_restart_at is None
    assert on_restart_unanswered(pending, T0 + 1).next_restart_at == T0 + 1


def test_a_heartbeat_does_not_age_while_the_disk_is_full():
    from coffee_team.watchdog.policy import FRESH, HUNG, heartbeat_counted_from
    last, full_until = 1000.0, 1500.0
    counted = heartbeat_counted_from(last, full_until, frozen=False)
    assert counted == full_until
    assert heartbeat_status(counted, full_until + 3, stale_after=3) == FRESH
    assert heartbeat_status(counted, full_until + 7, stale_after=3) == HUNG  # space back, silent
    # A stopped process has no excuse; nor is anything excused without a full disk.
    assert heartbeat_counted_from(last, full_until, frozen=True) == last
    assert heartbeat_counted_from(last, None, frozen=False) == last
    assert heartbeat_counted_from(None, full_until, frozen=False) is None
    assert heartbeat_counted_from(2000.0, full_until, frozen=False) == 2000.0


def test_a_heartbeat_older_than_the_process_counts_from_its_start():
    """The heartbeat file outlives its process: an instance restarted after its predecessor's
    last beat (still importing, or killed again before its first beat) is not hung for it."""
    from coffee_team.watchdog.policy import FRESH, HUNG, STALE, observe_beat
    last, started, mono = 1000.0, 1010.0, 50.0
    old = observe_beat(None, 7, last, None, started + 1, mono, None)
    assert heartbeat_status(old.since, mono, stale_after=3) == HUNG  # the old verdict
    seen = observe_beat(None, 7, last, started, started + 1, mono, None)
    assert seen.since == mono - 1  # counted from the start, 1 s ago
    assert heartbeat_status(seen.since, mono, stale_after=3) == FRESH
    # silent since its own start: stale, then hung, as any other process
    assert heartbeat_status(seen.since, mono + 4, stale_after=3) == STALE
    assert heartbeat_status(seen.since, mono + 6, stale_after=3) == HUNG
    # its own beats count as they are
    assert observe_beat(None, 7, 1020.0, started, 1021.0, mono, None).since == mono - 1


# --- observe_beat: heartbeat ages on the watchdog's monotonic clock ---------------------------
W0, M0 = 1_700_000_000.0, 500.0  # the watchdog's wall and monotonic clocks at the first look


def test_an_unchanged_heartbeat_ages_on_the_monotonic_clock_whatever_the_wall_clock_says():
    from coffee_team.watchdog.policy import observe_beat
    seen = observe_beat(None, 7, W0 - 5, None, W0, M0, None)
    assert seen.since == M0 - 5
    for wall in (W0 - 86400, W0, W0 + 86400):  # the wall clock went back, stood, went forward
        again = observe_beat(seen, 7, W0 - 5, None, wall, M0 + 100, None)
        assert again.since == M0 - 5 and again.read_at == M0 + 100


@pytest.mark.parametrize("wall_age, age", [
    (3.0, 3.0),       # the wall age, when no step says otherwise
    (-40.0, 0.0),     # stamped "in the future": just now (a step the watchdog did not see)
    (600.0, 0.0),     # older than the last read, which saw another stamp: not on our clock
    (31.0, 0.0),      # just before that read: the same
    (29.0, 29.0),     # just after it
])
def test_a_changed_heartbeat_counts_from_when_it_was_written(wall_age, age):
    from coffee_team.watchdog.policy import BeatSeen, observe_beat
    now_mono = M0 + 30
    seen = BeatSeen(pid=7, stamp=W0 - 999, since=M0 - 10, read_at=M0)
    new = observe_beat(seen, 7, W0 - wall_age, None, W0, now_mono, None)
    assert new.since == pytest.approx(now_mono - age)


@pytest.mark.parametrize("step", [600.0, -3600.0])
@pytest.mark.parametrize("written_ago, before_step", [(10.0, True), (1.0, False), (25.0, True)])
def test_a_stamp_from_before_a_step_is_read_on_the_clock_before_it(step, written_ago,
                                                                  before_step):
    """The watchdog saw the step between its looks at mono M0 + 28 and M0 + 29 (now: M0 + 30);
    the heartbeat was written ``written_ago`` seconds ago, by the clock of the moment."""
    from coffee_team.watchdog.policy import written_at
    mono, offset_before = M0 + 30, W0 - M0
    offset = offset_before + step
    at = mono - written_ago
    stamp = at + (offset_before if before_step else offset)
    found = written_at(stamp, mono + offset, mono, -math.inf, (M0 + 28, M0 + 29, offset_before))
    assert found == pytest.approx(at)


def test_a_new_instance_is_a_new_heartbeat_even_with_the_same_stamp():
    from coffee_team.watchdog.policy import observe_beat
    seen = observe_beat(None, 7, W0 - 10, None, W0, M0, None)
    restarted = observe_beat(seen, 8, W0 - 10, W0 + 40, W0 + 50, M0 + 50, None)
    assert (restarted.pid, restarted.since) == (8, M0 + 40)  # from the new one's start


@settings(max_examples=500, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.5, 120), st.floats(-3600, 3600),
                                st.booleans()), min_size=1, max_size=40))
def test_no_wall_clock_step_makes_a_beating_agent_old_or_a_frozen_one_young(steps):
    """Time passes in random pieces, with wall-clock steps of up to an hour either way, and
    the agent beats (on its own monotonic cadence) or is frozen: whatever the steps, the age
    the watchdog counts is never more than the agent's silence on the monotonic clock (no
    jump forward makes it hung), and for a frozen agent it is at least what it was plus the
    time that passed (no jump back makes it young)."""
    from coffee_team.clock import wall_step
    from coffee_team.watchdog.policy import observe_beat
    wall, mono = W0, M0
    clock_seen, last_step = (wall, mono), None
    stamp, written_mono = wall, mono
    seen = observe_beat(None, 7, stamp, None, wall, mono, last_step)
    slack = 0.0  # a step too small to be seen, between the last beat and its look
    for index, (passed, jump, frozen) in enumerate(steps):
        before = mono - seen.since
        if not frozen:  # the agent beats just before the look: its stamp is its wall clock
            # (+ a µs apart: two beats never carry the same stamp, as with time.time())
            stamp, written_mono = wall + passed + 1e-6 * index, mono + passed
        wall, mono = wall + passed + jump, mono + passed
        step = wall_step(clock_seen, wall, mono)
        if step:
            last_step = (clock_seen[1], mono, clock_seen[0] - clock_seen[1])
        clock_seen = (wall, mono)
        if not frozen:
            slack = 0.0 if step else abs(jump)
        seen = observe_beat(seen, 7, stamp, None, wall, mono, last_step)
        age = mono - seen.since
        assert age <= mono - written_mono + slack + 1e-6
        if frozen:
            assert age == pytest.approx(before + passed)


def test_a_rebased_restart_state_moves_with_the_wall_clock():
    from coffee_team.restarts import rebased
    state = RestartState(attempts=2, next_restart_at=T0 + 40, running_since=None,
                         last_crash_at=T0 - 20)
    assert rebased(state, 600.0) == RestartState(attempts=2, next_restart_at=T0 + 640,
                                                 last_crash_at=T0 + 580)
    assert rebased(rebased(state, 600.0), -600.0) == state
    assert rebased(RestartState(running_since=T0), -5.0) == RestartState(running_since=T0 - 5)


def test_escalation_waits_escalate_after_once_the_clock_jumped_forward():
    from coffee_team.watchdog.policy import escalation_held_until
    assert escalation_held_until(None, 600.0, 100.0, 60.0) == 160.0
    assert escalation_held_until(None, -600.0, 100.0, 60.0) is None  # back: tasks look younger
    assert escalation_held_until(None, 600.0, 100.0, None) is None   # escalation is off
    assert escalation_held_until(170.0, 600.0, 100.0, 60.0) == 170.0  # the later hold stands


def test_a_boot_is_supervisord_running_with_none_of_the_agents_started_yet():
    def info(name, start, group=None):
        return {"name": name, "group": group or name, "start": start}
    agents = {"a", "b"}
    fresh = [info("watchdog", 1700000000), info("web", 1700000001), info("a", 0), info("b", 0)]
    assert is_boot("RUNNING", fresh, agents)
    assert not is_boot("STARTING", fresh, agents)  # supervisord still reading its config
    restarted = fresh[:2] + [info("a", 1700000002), info("b", 0)]
    assert not is_boot("RUNNING", restarted, agents)  # a watchdog restarted after the boot
    assert not is_boot("RUNNING", fresh[:2], agents)  # no agent known to supervisord
    other_group = fresh[:2] + [info("a", 0, group="pool"), info("b", 7)]
    assert not is_boot("RUNNING", other_group, agents)
