"""The pure rules of deadlock detection (rules/waits.py) and predictive restart
(rules/trend.py): functions of their inputs, no clock, no database."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffee_team.rules.trend import growth_per_second, reaches_limit_in, restart_due
from coffee_team.rules.waits import WaitCycle, find_cycles

R, W, P = "in_progress", "waiting", "pending"


# --- wait cycles -------------------------------------------------------------------------

def test_a_running_task_waiting_on_a_task_that_waits_on_its_agent_is_a_cycle():
    # alice runs #10, which waits on bob's #11; #11 waits on alice's #12, which cannot start
    waits = [(10, "alice", R, 11, "bob", W), (11, "bob", W, 12, "alice", P)]
    [cycle] = find_cycles(waits, {"alice": [10], "bob": []})
    assert cycle == WaitCycle((10, 11, 12), ("alice", "bob", "alice"))
    assert cycle.describe() == "alice → bob → alice (#10 → #11 → #12 → #10)"
    assert cycle.key == "#10>#11>#12"


def test_waiting_on_a_free_agent_is_no_cycle():
    waits = [(11, "bob", W, 12, "alice", P), (13, "alice", W, 14, "bob", P)]
    assert find_cycles(waits, {"alice": [], "bob": []}) == []


def test_two_running_tasks_waiting_on_each_others_agents():
    waits = [(1, "a", R, 2, "b", P), (3, "b", R, 4, "a", P)]
    [cycle] = find_cycles(waits, {"a": [1], "b": [3]})
    assert cycle.tasks == (1, 2, 3, 4) and cycle.describe().startswith("a → b → a")


def test_the_same_cycle_found_from_any_order_has_one_key():
    waits = [(10, "alice", R, 11, "bob", W), (11, "bob", W, 12, "alice", P)]
    keys = {find_cycles(list(order), {"alice": [10], "bob": []})[0].key
            for order in (waits, waits[::-1])}
    assert keys == {"#10>#11>#12"}


def test_a_running_task_waiting_on_its_own_agents_next_task():
    [cycle] = find_cycles([(5, "solo", R, 6, "solo", P)], {"solo": [5]})
    assert cycle.describe() == "solo → solo (#5 → #6 → #5)"


@given(st.integers(2, 60))
def test_a_long_chain_is_no_cycle_and_closing_it_makes_one(length):
    chain = [(i, f"a{i}", W, i + 1, f"a{i + 1}", P) for i in range(1, length)]
    assert find_cycles(chain, {}) == []
    closed = [*chain, (length, f"a{length}", R, 1, "a1", W)]
    [cycle] = find_cycles([(c, a, R if c == length else s, p, pa, ps)
                           for c, a, s, p, pa, ps in closed], {f"a{length}": [length]})
    assert cycle.tasks == tuple(range(1, length + 1))


def test_two_separate_cycles_are_both_found():
    waits = [(1, "a", R, 2, "b", P), (3, "b", R, 4, "a", P),
             (10, "c", R, 11, "d", P), (12, "d", R, 13, "c", P)]
    found = find_cycles(waits, {"a": [1], "b": [3], "c": [10], "d": [12]})
    assert [c.tasks[0] for c in found] == [1, 10]


# --- memory trend ------------------------------------------------------------------------

def line(start_mb: float, mb_per_min: float, minutes: int, every: float = 30.0):
    return [(k * every, start_mb + mb_per_min * k * every / 60) for k in
            range(int(minutes * 60 / every) + 1)]


def test_growth_is_the_least_squares_slope():
    assert growth_per_second(line(100, 6, 10)) == pytest.approx(0.1)
    assert growth_per_second([(0, 1), (0, 2)]) is None


def test_a_steady_leak_is_projected_to_the_limit():
    samples = line(200, 10, 20)  # 200 -> 400 MB over 20 minutes
    assert reaches_limit_in(samples, 500, 1200, 1800) == pytest.approx(600)
    assert restart_due(samples, 500, 1200, 1800, 600) == pytest.approx(600)
    assert restart_due(samples, 500, 1200, 1800, 599) is None


@pytest.mark.parametrize("samples, why", [
    (line(200, 0, 20), "flat"),
    (line(400, -5, 20), "shrinking"),
    (line(200, 100, 10)[:2], "two samples"),
    (line(200, 100, 5), "5 minutes of a 30-minute window"),
])
def test_no_prediction_without_a_trend_to_trust(samples, why):
    assert reaches_limit_in(samples, 500, samples[-1][0], 1800) is None, why


def test_samples_outside_the_window_do_not_count():
    old_spike = [(-5000.0, 1000.0)]
    samples = old_spike + line(200, 0, 20)
    assert reaches_limit_in(samples, 500, 1200, 1800) is None
