"""``coffee-team status`` marks a heartbeat past heartbeat_stale_after, and says what an agent
waits for (issue 26: partitions); pure rules and the rendered line, no processes."""
from __future__ import annotations

import json
import os
import time

from coffee_team import status
from tests.fast_team import temp_root, write_team

NOW = 1_700_000_000.0


def test_stale_is_past_stale_after_only():
    assert not status.heartbeat_stale(None, NOW, 300)
    assert not status.heartbeat_stale(NOW - 300, NOW, 300)
    assert status.heartbeat_stale(NOW - 300.5, NOW, 300)
    assert not status.heartbeat_stale(NOW + 60, NOW, 300)  # another clock ahead: not stale


def test_heartbeat_text():
    agent = {"heartbeat_age_seconds": 412.0, "heartbeat_stale": True,
             "waiting_for": "database", "waiting_since": NOW - 100}
    since = time.strftime("%H:%M:%S", time.localtime(NOW - 100))
    assert status.heartbeat_text(agent, NOW) == \
        f"heartbeat 412s ago STALE, waiting for database since {since} (1m 40s)"
    assert status.heartbeat_text({"heartbeat_age_seconds": 3.0}, NOW) == "heartbeat 3s ago"
    assert status.heartbeat_text({"heartbeat_age_seconds": None}, NOW) == ""


def test_status_marks_the_stale_heartbeat_and_the_wait():
    with temp_root() as root:
        team = write_team(root, {"w0": {}, "w1": {}}, heartbeat_stale_after=30)
        beats = {"w0": {"agent": "w0", "state": "idle", "last_heartbeat": NOW - 45},
                 "w1": {"agent": "w1", "state": "idle", "last_heartbeat": NOW - 2,
                        "waiting_for": "database", "waiting_since": NOW - 20}}
        for name, beat in beats.items():
            (team.status_dir / f"{name}_status.json").write_text(json.dumps(beat))
        infos = [{"name": n, "statename": "RUNNING", "pid": os.getpid(), "start": 1,
                  "description": ""} for n in ("w0", "w1")]
        data = status.collect(team, infos, os.getpid(), now=NOW)
    rows = {a["name"]: a for a in data["agents"]}
    assert rows["w0"]["heartbeat_stale"] is True and rows["w1"]["heartbeat_stale"] is False
    assert rows["w1"]["waiting_for"] == "database"
    assert rows["w1"]["waiting_since"] == NOW - 20
    text = status.render({**data, "now": NOW})
    line = {n: next(line for line in text.splitlines() if f" {n}: " in line)
            for n in ("w0", "w1")}
    assert "heartbeat 45s ago STALE" in line["w0"]
    assert "STALE" not in line["w1"] and "waiting for database since" in line["w1"]
