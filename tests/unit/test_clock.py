"""The shared time words (coffee_team.clock): the UTC day and durations, with injected moments."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coffee_team import clock
from coffee_team.clock import WALL_STEP, wall_step
from coffee_team.cli.costs import parse_since
from coffee_team.cli.base import UserError
from coffee_team.llm import budget, ratelimit

MIDNIGHT = datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp()  # 2025-06-01 00:00:00 UTC


@pytest.mark.parametrize("now, day", [
    (MIDNIGHT, "2025-06-01"),                     # the first second belongs to the new day
    (MIDNIGHT - 0.001, "2025-05-31"),             # the last moment of the day before
    (MIDNIGHT + clock.DAY - 0.001, "2025-06-01"),
    (MIDNIGHT + clock.DAY, "2025-06-02"),
    (datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc).timestamp(), "2024-02-29"),
    (datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp(), "2024-12-31"),
    (0.0, "1970-01-01"),
])
def test_utc_day_at_day_boundaries(now, day):
    assert clock.utc_day(now) == day
    assert clock.utc_day(clock.day_start(now)) == day
    assert clock.utc_day(clock.next_day(now) - 0.001) == day
    assert clock.utc_day(clock.next_day(now)) == (
        datetime.strptime(day, "%Y-%m-%d") + timedelta(days=1)).strftime("%Y-%m-%d")


def test_utc_day_ignores_the_local_time_zone(monkeypatch):
    """11 pm in New York on May 31 is already June 1 in UTC."""
    import time
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert clock.utc_day(MIDNIGHT + 3600) == "2025-06-01"
        assert clock.utc_minute(MIDNIGHT + 3600) == "2025-06-01 01:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_day_start_and_next_day():
    now = MIDNIGHT + 12.5 * 3600
    assert clock.day_start(now) == MIDNIGHT
    assert clock.next_day(now) == MIDNIGHT + 86400
    assert clock.next_day(MIDNIGHT) == MIDNIGHT + 86400  # midnight starts a day, never ends one


def test_a_budget_stop_lasts_until_the_next_utc_day():
    stop = budget.decide("a", budget.Spend(usd=2.0), budget.Budget(usd_per_day=1.0),
                         MIDNIGHT + clock.DAY - 1)
    assert (stop.day, stop.until) == ("2025-06-01", MIDNIGHT + clock.DAY)
    assert "intake resumes at 2025-06-02 00:00 UTC" in stop.reason


def test_the_unit_table():
    assert clock.UNIT_SECONDS == {"s": 1, "m": 60, "h": 3600, "d": 86400}


@pytest.mark.parametrize("text, seconds", [
    ("30", 30), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5m", 90),
    ("0", 0), (" 7 d ", 7 * 86400), ("30d", 30 * 86400)])
def test_parse_duration(text, seconds):
    assert clock.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5", "nan", "inf", "5x", "", "m", "1e9", "5 min", "1" * 400])
def test_parse_duration_refuses_in_one_line(text):
    with pytest.raises(ValueError, match=r"^expected a duration like 30 \(seconds\)") as caught:
        clock.parse_duration(text)
    assert "\n" not in str(caught.value)


def test_a_bare_number_is_seconds_for_delay_and_since_alike():
    """One meaning: ``--since 90`` is 90 seconds (it was 90 days while costs had its own table)."""
    assert parse_since("90") == 90 == clock.parse_duration("90")
    assert parse_since("7d") == 7 * 86400
    for bad in ("0", "0d", "3651d", "soon"):
        with pytest.raises(UserError, match="--since: expected a duration like 7d"):
            parse_since(bad)


def test_rate_limit_texts_use_the_same_units():
    assert ratelimit.reset_time("try again in 2 minutes", 1000.0) == 1000.0 + 2 * 60
    assert ratelimit.reset_time("retry after 3 hours", 1000.0) == 1000.0 + 3 * 3600
    assert ratelimit.reset_time("Try again in 45s", 1000.0) == 1045.0


# --- wall_step: a step of the wall clock against the monotonic one --------------------------

@pytest.mark.parametrize("wall_moved, mono_moved, step", [
    (1.0, 1.0, 0.0),            # time passed: both moved together
    (1.0 + WALL_STEP, 1.0, 0.0),  # at the threshold: not a step (NTP slews far less)
    (603.0, 3.0, 600.0),        # forward: date -s, a VM or laptop resumed
    (-3597.0, 3.0, -3600.0),    # back
    (0.0, 3.0, -3.0),
])
def test_wall_step_boundaries(wall_moved, mono_moved, step):
    before = (1_700_000_000.0, 500.0)
    found = wall_step(before, before[0] + wall_moved, before[1] + mono_moved)
    assert found == pytest.approx(step)


def test_wall_step_needs_an_earlier_reading():
    assert wall_step(None, 1_700_000_000.0, 5.0) == 0.0
