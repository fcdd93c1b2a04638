"""Exponential backoff written once (coffee_team.retry) and every schedule built on it."""
from __future__ import annotations

import itertools
import math

import pytest

from coffee_team import notify, restarts, retry, taskstate
from coffee_team.llm import ratelimit


def test_delay_doubles_from_first_and_stops_at_the_cap():
    assert [retry.delay(n, 2.0, 20.0) for n in range(1, 7)] == [2, 4, 8, 16, 20, 20]
    assert retry.delay(3, 0.5) == 2.0  # no cap by default


@pytest.mark.parametrize("failures", [0, -1])
def test_delay_counts_failures_from_one(failures):
    with pytest.raises(ValueError, match="counts from 1"):
        retry.delay(failures, 1.0)


def test_a_long_count_stays_finite():
    assert retry.delay(10**6, 1.0) == 2.0 ** retry.MAX_DOUBLINGS
    assert math.isfinite(retry.delay(10**6, 1e6))


def test_delays_is_the_same_schedule():
    assert list(itertools.islice(retry.delays(0.1, 1.0), 6)) == \
        [retry.delay(n, 0.1, 1.0) for n in range(1, 7)]


@pytest.mark.parametrize("n", [1, 2, 5, 12, 70])
def test_every_backoff_is_retry_delay(n):
    """The task retry, the watchdog's restarts, notification deliveries and rate limits."""
    policy = taskstate.RetryPolicy(attempts=100, backoff=3.0, max_backoff=500.0)
    assert taskstate.backoff_delay(policy, n) == retry.delay(n, 3.0, 500.0)
    assert restarts.backoff_delay(n - 1, 7.0) == retry.delay(n, 7.0)
    assert notify.retry_delay(n) == retry.delay(n, notify.FIRST_RETRY, notify.MAX_RETRY)
    assert ratelimit.backoff(n) == retry.delay(n, ratelimit.BACKOFF_FIRST, ratelimit.BACKOFF_MAX)


def test_the_jitter_is_added_before_the_cap():
    policy = taskstate.RetryPolicy(attempts=9, backoff=10.0, max_backoff=1000.0)
    assert taskstate.backoff_delay(policy, 2, jitter=1.0) == pytest.approx(20.0 * (1 + taskstate.JITTER))
    assert taskstate.backoff_delay(policy, 9, jitter=1.0) == 1000.0


def test_restarts_keep_their_validation():
    for attempt in (-1, 1.5, True):
        with pytest.raises(ValueError, match="attempt must be an int >= 0"):
            restarts.backoff_delay(attempt, 60)
    with pytest.raises(ValueError):
        restarts.backoff_delay(0, float("nan"))
