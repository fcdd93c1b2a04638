"""Cron slots and the due rule (coffee_team.rules.cron), with an injected clock: a watchdog
looking every minute across daylight-saving changes and a downtime; the team file's
schedule: and memory_trend: keys. No process, no database."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from coffee_team.errors import TeamError
from coffee_team.rules.cron import (NOTHING, ON_TIME, RECORD, SEND, Due, check, due,
                                    latest_slot, next_slot, zone)
from coffee_team.team import parse_team

PARIS = zone("Europe/Paris")


def at(*fields, tz=PARIS, fold=0) -> float:
    return datetime(*fields, tzinfo=tz, fold=fold).timestamp()


def local(t: float, tz=PARIS) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M %Z")


def run_watchdog(expr, tz, start, end, step=60.0, down=(), catch_up="one", last=None):
    """The watchdog's loop over [start, end): at each look, due() and the slot recorded as the
    database would (a SEND or RECORD stores the slot). ``down`` = (from, to) it does not look.
    Returns (sent slots, recorded-only slots)."""
    sent, recorded, now = [], [], start
    while now < end:
        if not any(a <= now < b for a, b in down):
            decision = due(expr, tz, last, now, catch_up)
            if decision.action != NOTHING:
                (sent if decision.action == SEND else recorded).append(decision.slot)
                last = decision.slot
        now += step
    return sent, recorded


def test_a_daily_slot_in_the_spring_forward_gap_runs_once_at_the_first_minute_after():
    # Paris 2024-03-31: 02:00 CET -> 03:00 CEST; 02:30 does not exist that day.
    sent, _ = run_watchdog("30 2 * * *", PARIS, at(2024, 3, 30, 12, 0), at(2024, 4, 2, 12, 0),
                           last=at(2024, 3, 30, 2, 30))
    assert [local(s) for s in sent] == ["2024-03-31 03:00 CEST", "2024-04-01 02:30 CEST",
                                        "2024-04-02 02:30 CEST"]


def test_a_daily_slot_in_the_autumn_repeat_runs_once():
    # Paris 2024-10-27: 03:00 CEST -> 02:00 CET; 02:30 happens twice in real time.
    sent, _ = run_watchdog("30 2 * * *", PARIS, at(2024, 10, 26, 12, 0),
                           at(2024, 10, 28, 12, 0), last=at(2024, 10, 26, 2, 30))
    assert [local(s) for s in sent] == ["2024-10-27 02:30 CEST", "2024-10-28 02:30 CET"]


@pytest.mark.parametrize("day", [(2024, 3, 30), (2024, 10, 26)])
def test_an_hourly_job_follows_real_time_across_a_change(day):
    start = at(*day, 12, 0)
    end = start + 48 * 3600 + 60  # the 48 hours after start, the last one included
    sent, _ = run_watchdog("0 * * * *", PARIS, start, end, last=latest_slot("0 * * * *", PARIS,
                                                                             start))
    assert len(sent) == len(set(sent)) == 48  # one per real hour, none twice
    assert all(b - a == 3600 for a, b in zip(sent, sent[1:]))


def test_weekdays_at_nine_in_their_zone():
    sent, _ = run_watchdog("0 9 * * 1-5", PARIS, at(2024, 5, 3, 8, 0), at(2024, 5, 7, 10, 0),
                           step=30.0, last=at(2024, 5, 2, 9, 0))
    assert [local(s) for s in sent] == ["2024-05-03 09:00 CEST", "2024-05-06 09:00 CEST",
                                        "2024-05-07 09:00 CEST"]
    assert all(s >= at(2024, 5, 3, 9, 0) for s in sent)


@pytest.mark.parametrize("catch_up, expected", [("one", 1), ("none", 0)])
def test_a_downtime_over_many_slots_sends_at_most_one_on_return(catch_up, expected):
    start = at(2024, 5, 1, 0, 0)
    down = (start + 3600 + 60, start + 10 * 3600 + 1800)  # misses 8 hourly slots (02:00-10:00)
    sent, recorded = run_watchdog("0 * * * *", PARIS, start, start + 12 * 3600, down=[down],
                                  catch_up=catch_up, last=start)
    on_return = [s for s in sent + recorded if down[0] <= s < down[1]]
    late = [s for s in sent if down[0] <= s < down[1]]
    assert len(late) == expected
    assert on_return == [at(2024, 5, 1, 10, 0)]  # only the latest missed slot is looked at
    assert [local(s) for s in sent if s >= down[1]] == ["2024-05-01 11:00 CEST"]
    assert len(sent) == len(set(sent))


def test_a_new_entry_starts_now_and_an_on_time_slot_is_sent():
    now = at(2024, 5, 1, 9, 0) + 30
    assert due("0 9 * * *", PARIS, None, now) == Due(SEND, at(2024, 5, 1, 9, 0))
    later = at(2024, 5, 1, 15, 0)
    assert due("0 9 * * *", PARIS, None, later) == Due(RECORD, at(2024, 5, 1, 9, 0))
    assert due("0 9 * * *", PARIS, at(2024, 5, 1, 9, 0), later) == Due(NOTHING)


@pytest.mark.parametrize("late, action", [(ON_TIME, SEND), (ON_TIME + 1, RECORD)])
def test_on_time_boundary_with_catch_up_none(late, action):
    slot = at(2024, 5, 1, 9, 0)
    assert due("0 9 * * *", PARIS, slot - 86400, slot + late, "none") == Due(action, slot)


def test_next_and_latest_slot_bounds():
    nine = at(2024, 5, 1, 9, 0)
    assert next_slot("0 9 * * *", PARIS, nine) == nine + 86400   # strictly after
    assert next_slot("0 9 * * *", PARIS, nine - 1) == nine
    assert latest_slot("0 9 * * *", PARIS, nine) == nine          # at or before
    assert latest_slot("0 9 * * *", PARIS, nine - 1) == nine - 86400
    with pytest.raises(ValueError, match="Bad day-of-month"):
        check("0 0 30 2 *")                                       # never: refused at load


def test_utc_is_the_default_zone_and_bad_names_are_one_line():
    assert zone(None).utcoffset(None) == timedelta(0)
    with pytest.raises(ValueError, match="^an IANA time zone name"):
        zone("Mars/Olympus")
    with pytest.raises(ValueError, match=r"Bad hour"):
        check("0 25 * * *")
    with pytest.raises(ValueError, match="five-field"):
        check("0 0 9 * * *")


# --- the team file --------------------------------------------------------------------

def team(agent: dict, **settings):
    return parse_team({"team": settings, "agents": {"a": {"handler": "x.y:z", **agent}}})


def error(agent: dict, **settings) -> str:
    with pytest.raises(TeamError) as info:
        team(agent, **settings)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_schedule_and_memory_trend_are_parsed():
    t = team({"memory_limit_mb": 500, "memory_trend": {"window": "30m", "restart_before": 600},
              "schedule": [{"cron": "0  9 * * 1-5", "type": "daily_review",
                            "content": {"depth": 2}, "timezone": "Europe/Paris"},
                           {"cron": "0 * * * *", "type": "daily_review", "name": "hourly",
                            "catch_up": "none", "priority": 1}]}, timezone="America/New_York")
    first, second = t.agents[0].schedule
    assert (first.name, first.cron, first.content, first.catch_up) == (
        "daily_review", "0 9 * * 1-5", {"depth": 2}, "one")
    assert (second.name, second.timezone, second.priority) == ("hourly", None, 1)
    assert (t.agents[0].memory_trend.window, t.agents[0].memory_trend.restart_before) == (
        1800.0, 600.0)
    assert t.settings.timezone == "America/New_York"


@pytest.mark.parametrize("agent, settings, says", [
    ({"schedule": [{"cron": "0 9 * * *"}]}, {}, "schedule[0]: missing type"),
    ({"schedule": [{"cron": "61 9 * * *", "type": "t"}]}, {}, "schedule[0].cron: expected a valid"),
    ({"schedule": [{"cron": "0 9 * * *", "type": "t", "timezone": "Nowhere/City"}]}, {},
     "schedule[0].timezone: expected an IANA"),
    ({"schedule": [{"cron": "0 9 * * *", "type": "t", "when": 1}]}, {},
     "schedule[0].when: unknown key"),
    ({"schedule": {"cron": "0 9 * * *"}}, {}, "schedule: expected a list"),
    ({"schedule": [{"cron": "0 9 * * *", "type": "t"}, {"cron": "0 8 * * *", "type": "t"}]},
     {}, "a second entry named 't'"),
    ({}, {"timezone": "Europe/Atlantis"}, "team.timezone: expected an IANA"),
    ({"memory_trend": {"window": "30m", "restart_before": "10m"}}, {}, "needs memory_limit_mb"),
    ({"memory_limit_mb": 9, "memory_trend": {"window": "30m"}}, {}, "needs window and"),
    ({"memory_limit_mb": 9, "memory_trend": {"window": "-5", "restart_before": "1m"}}, {},
     "memory_trend.window: expected a duration"),
])
def test_bad_schedules_and_trends_are_one_line(agent, settings, says):
    assert says in error(agent, **settings)


def test_an_agent_reads_schedules_without_evaluating_them():
    """check_schedules=False (the agent's load) checks the shape only: a range error passes."""
    document = {"agents": {"a": {"handler": "x.y:z",
                                 "schedule": [{"cron": "61 9 * * *", "type": "t"}]}}}
    assert parse_team(document, check_schedules=False).agents[0].schedule[0].cron == "61 9 * * *"
    with pytest.raises(TeamError, match="shape|five-field"):
        parse_team({"agents": {"a": {"handler": "x.y:z", "schedule": [
            {"cron": "every day", "type": "t"}]}}}, check_schedules=False)
