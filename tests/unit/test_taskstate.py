"""The task state machine's pure rules, exhaustively and with hypothesis (no processes)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffee_team.taskstate import (ACTIONS, FINISHED, JITTER, MAX_DELAY_SECONDS, NO_RETRY,
                                   ON_DEPENDENCY_FAILURE, STATES, DependencyOutcome,
                                   RetryPolicy, TransitionError, after_failure,
                                   after_parent_finished, after_parents, attempt_label,
                                   backoff_delay, check_delay, escalated_priority, exit_code,
                                   initial_state, transition)

ALLOWED = {("claim", "pending"): "in_progress", ("complete", "in_progress"): "completed",
           ("cancel", "pending"): "cancelled", ("cancel", "in_progress"): "cancelled",
           ("cancel", "waiting"): "cancelled",
           ("retry", "failed"): "pending", ("retry", "cancelled"): "pending",
           ("retry", "pending"): "pending",  # a delayed one is released (queue.retry_task)
           ("release", "waiting"): "pending", ("fail_dependency", "waiting"): "failed",
           ("approve", "awaiting_approval"): "pending",
           ("deny", "awaiting_approval"): "cancelled",
           ("cancel", "awaiting_approval"): "cancelled"}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("state", STATES)
def test_every_transition(action, state):
    if (action, state) in ALLOWED:
        assert transition(state, action) == ALLOWED[(action, state)]
    else:
        with pytest.raises(TransitionError, match=f"^cannot {action} a task that is {state}"):
            transition(state, action)


def test_a_task_awaiting_approval_leaves_only_by_a_decision_or_a_cancel():
    leaving = {a: ALLOWED[(a, "awaiting_approval")] for a in ACTIONS
               if (a, "awaiting_approval") in ALLOWED}
    assert leaving == {"approve": "pending", "deny": "cancelled", "cancel": "cancelled"}
    # nothing else leads into it: only a send does (initial_state)
    assert not any(target == "awaiting_approval" for target in ALLOWED.values())


@pytest.mark.parametrize("recipient, task_type, expected", [
    ("deployer", "deploy", "awaiting_approval"),
    ("deployer", "report", "pending"),
    ("other", "deploy", "pending"),     # approve_before is the recipient's, not the type's
])
def test_a_task_is_sent_awaiting_approval_only_for_its_recipients_types(recipient, task_type,
                                                                        expected):
    gates = {"deployer": ("deploy", "release")}
    assert initial_state(recipient, task_type, gates) == expected
    assert initial_state(recipient, task_type, {}) == "pending"


def test_finished_states_only_leave_by_retry():
    for state in ("completed", "failed", "cancelled"):
        leaving = [a for a in ACTIONS if (a, state) in ALLOWED]
        assert leaving == ([] if state == "completed" else ["retry"])


def test_waiting_leaves_only_by_release_dependency_failure_or_cancel():
    assert sorted(a for a, (sources, _) in ACTIONS.items() if "waiting" in sources) == [
        "cancel", "fail_dependency", "release"]
    assert all(ACTIONS[a][1] != "waiting" for a in ACTIONS)  # only a send makes a task wait


# --- dependencies: every parent state, policy and count -----------------------------------

@pytest.mark.parametrize("on_failure", ON_DEPENDENCY_FAILURE)
@pytest.mark.parametrize("parent", STATES)
@pytest.mark.parametrize("child", STATES)
@pytest.mark.parametrize("waiting_on", [1, 2, 3])
def test_after_parent_finished_exhaustively(child, parent, on_failure, waiting_on):
    outcome = after_parent_finished(child, waiting_on, 41, parent, on_failure)
    if child != "waiting" or parent not in FINISHED:
        assert outcome == DependencyOutcome(child, waiting_on, None)  # nothing happens
    elif parent != "completed" and on_failure == "fail":
        assert outcome.status == "failed"
        assert outcome.error.startswith("dependency #41 failed")
    elif waiting_on == 1:
        assert outcome == DependencyOutcome("pending", 0, None)  # the last one: released
    else:
        assert outcome == DependencyOutcome("waiting", waiting_on - 1, None)


@given(st.lists(st.sampled_from(STATES), max_size=6), st.sampled_from(ON_DEPENDENCY_FAILURE))
def test_after_parents_waits_for_every_unfinished_parent(statuses, on_failure):
    parents = list(enumerate(statuses, start=100))
    outcome = after_parents(parents, on_failure)
    unfinished = sum(1 for s in statuses if s not in FINISHED)
    failed = [i for i, s in parents if s in ("failed", "cancelled")]
    if failed and on_failure == "fail":
        assert (outcome.status, outcome.error) == ("failed", f"dependency #{failed[0]} failed"
                                                   + (" (cancelled)" if statuses[failed[0] - 100]
                                                      == "cancelled" else ""))
    else:
        assert outcome == DependencyOutcome("waiting" if unfinished else "pending", unfinished,
                                            None)


@given(st.permutations(["completed", "completed", "completed"]))
def test_a_child_of_three_is_released_by_the_last_completion_only(order):
    status, waiting_on = "waiting", 3
    seen = []
    for i, parent in enumerate(order):
        outcome = after_parent_finished(status, waiting_on, i, parent, "fail")
        status, waiting_on = outcome.status, outcome.waiting_on
        seen.append(status)
    assert seen == ["waiting", "waiting", "pending"]


def test_a_bad_on_dependency_failure_is_one_line():
    with pytest.raises(ValueError, match="^on_dependency_failure must be one of fail, run"):
        after_parents([], "skip")


policies = st.builds(RetryPolicy, attempts=st.integers(1, 20),
                     backoff=st.floats(0.001, 1e6), max_backoff=st.floats(0.001, 1e7))


@given(policies, st.integers(1, 200), st.floats(0, 1))
def test_backoff_doubles_is_capped_and_jitter_stays_small(policy, failures, jitter):
    delay = backoff_delay(policy, failures, jitter)
    plain = min(policy.max_backoff, policy.backoff * 2.0 ** min(failures - 1, 64))
    assert 0 < delay <= policy.max_backoff
    assert plain <= delay <= plain * (1 + JITTER) + 1e-9
    if failures > 1 and backoff_delay(policy, failures - 1) < policy.max_backoff / 2:
        assert backoff_delay(policy, failures) == pytest.approx(2 * backoff_delay(policy, failures - 1))


def test_backoff_schedule_of_the_issue():
    policy = RetryPolicy(attempts=3, backoff=2)
    assert [backoff_delay(policy, k) for k in (1, 2)] == [2.0, 4.0]
    with pytest.raises(ValueError):
        backoff_delay(policy, 0)


@given(policies, st.integers(0, 30), st.floats(0, 1e9), st.floats(0, 1))
def test_after_failure_retries_exactly_until_the_last_attempt(policy, before, now, jitter):
    outcome = after_failure(policy, before, "boom", now, jitter)
    assert outcome.failures == before + 1
    if before + 1 < policy.attempts:
        assert outcome.status == "pending"
        assert outcome.run_after == now + backoff_delay(policy, before + 1, jitter)
    else:
        assert (outcome.status, outcome.run_after) == ("failed", None)


def test_no_policy_never_retries():
    assert after_failure(NO_RETRY, 0, "x", 5.0).status == "failed"


def test_a_permanent_failure_is_final_whatever_the_policy():
    policy = RetryPolicy(attempts=5)
    assert after_failure(policy, 0, "x", 5.0).status == "pending"
    assert after_failure(policy, 0, "x", 5.0, permanent=True) == \
        after_failure(NO_RETRY, 0, "x", 5.0)


@pytest.mark.parametrize("error, retried", [
    ("worker exited with 75: busy", True),
    ("worker exited with 75", True),
    ("worker exited with 751: x", False),
    ("HandlerError: 429 rate limit", True),
    ("worker exited with 1: crash", False),
    ("timed out after 5s", False),
])
def test_on_matches_exit_codes_and_patterns(error, retried):
    policy = RetryPolicy(attempts=2, on=(75, r"rate limit"))
    assert policy.matches(error) is retried
    assert after_failure(policy, 0, error, 0.0).status == ("pending" if retried else "failed")


def test_exit_code_is_read_from_the_command_error():
    assert exit_code("python3 exited with -9: ") == -9
    assert exit_code("ValueError: bad") is None


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12)))
def test_check_delay_accepts_exactly_0_to_30_days(value):
    if isinstance(value, float) and not math.isfinite(value) or not 0 <= value <= MAX_DELAY_SECONDS:
        with pytest.raises(ValueError):
            check_delay(value)
    else:
        assert check_delay(value) == float(value)


@given(st.integers(0, 9), st.floats(0, 1e6), st.floats(0, 1e6), st.floats(1, 1e5))
def test_escalation_one_step_toward_zero_per_period(priority, since, waited, after):
    now = since + waited
    new = escalated_priority(priority, since, now, after)
    if priority == 0 or now - since < after:
        assert new is None
    else:
        assert new == priority - 1


def test_attempt_label():
    policy = RetryPolicy(attempts=3)
    assert attempt_label("pending", 0, policy) == "1/3"
    assert attempt_label("pending", 2, policy) == "3/3"
    assert attempt_label("failed", 3, policy) == "3/3"
    assert attempt_label("failed", 1, NO_RETRY) == "1/1"
    assert attempt_label("in_progress", 4, policy) == "5/5"  # after a retry by hand
