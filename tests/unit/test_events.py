"""The journal's words (coffee_team.events): notification levels written once, used alike by
the team file, the queue's deliveries, its table and notify's Apprise mapping."""
from __future__ import annotations

import re

import pytest

from coffee_team import notify
from coffee_team.errors import TeamError
from coffee_team.events import NOTIFICATION_LEVELS, levels_from
from coffee_team.team import parse_team


@pytest.mark.parametrize("level, received", [
    ("INFO", ("INFO", "WARNING", "CRITICAL")),
    ("WARNING", ("WARNING", "CRITICAL")),
    ("CRITICAL", ("CRITICAL",)),
])
def test_a_minimum_level_receives_it_and_the_more_urgent_ones(level, received):
    assert levels_from(level) == received


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError):
        levels_from("DEBUG")


def test_the_notifications_table_checks_the_same_levels():
    from coffee_team.queue.models import Notification
    (check,) = Notification.level.constraints
    assert tuple(re.findall(r"'(\w+)'", check.sql)) == NOTIFICATION_LEVELS


def test_notify_maps_every_level_to_an_apprise_type():
    assert tuple(notify.APPRISE_TYPES) == NOTIFICATION_LEVELS


def test_the_team_file_takes_exactly_these_levels():
    doc = {"team": {"notify": [{"url": "json://localhost/x", "level": "CRITICAL"}]},
           "agents": {"a": {"handler": "m:f"}}}
    assert parse_team(doc).settings.notify[0].level == "CRITICAL"
    doc["team"]["notify"][0]["level"] = "DEBUG"
    with pytest.raises(TeamError, match="one of INFO, WARNING, CRITICAL, got 'DEBUG'"):
        parse_team(doc)
