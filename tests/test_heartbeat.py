"""The heartbeat file: one path, one writer, one reader (no processes, no clock)."""
from __future__ import annotations

import stat

import pytest

from coffee_team.heartbeat import heartbeat_path, last_beat, read_heartbeat, write_heartbeat


def test_written_heartbeat_reads_back_private(tmp_path):
    write_heartbeat(tmp_path, "ann", {"agent": "ann", "last_heartbeat": 12.5, "state": "idle"})
    assert read_heartbeat(tmp_path, "ann") == {"agent": "ann", "last_heartbeat": 12.5,
                                              "state": "idle"}
    assert heartbeat_path(tmp_path, "ann") == tmp_path / "ann_status.json"
    assert stat.S_IMODE(heartbeat_path(tmp_path, "ann").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ann_status.json"]  # no temp file left


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]", '"text"', "\xff\xfe"])
def test_missing_or_unreadable_heartbeat_is_empty(tmp_path, content):
    if content is not None:
        heartbeat_path(tmp_path, "ann").write_text(content, encoding="latin-1")
    assert read_heartbeat(tmp_path, "ann") == {}
    assert last_beat(read_heartbeat(tmp_path, "ann")) is None


@pytest.mark.parametrize("beat, expected", [
    ({"last_heartbeat": 3}, 3.0), ({"last_heartbeat": "4.5"}, 4.5), ({}, None),
    ({"last_heartbeat": None}, None), ({"last_heartbeat": "soon"}, None),
    ({"last_heartbeat": [1]}, None)])
def test_last_beat(beat, expected):
    assert last_beat(beat) == expected


def test_unwritable_directory_raises_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        write_heartbeat(blocker, "ann", {"last_heartbeat": 1.0})


# --- what status shows of the heartbeat ------------------------------------------------------

T0 = 1_700_000_000.0


def row(state, task=None, last_output_at=None):
    return {"agent_state": state, "current_task": task, "last_output_at": last_output_at}


@pytest.mark.parametrize("agent, now, text", [
    (row("working", {"id": 42, "type": "t", "started_at": T0}, T0 + 4300), T0 + 4320,
     "working on #42 for 1h 12m"),
    (row("working", {"id": 42, "type": "t", "started_at": T0}, T0), T0 + 4320,
     "working on #42 for 1h 12m, no output for 1h 12m"),
    (row("working", {"id": 7, "type": "t", "started_at": T0}, T0), T0 + 59,
     "working on #7 for 0m 59s"),  # silent for under a minute is not worth a word
    (row("working", {"id": None, "type": "periodic", "started_at": T0}, T0 + 1), T0 + 3,
     "working on a periodic run for 0m 3s"),
    (row("working", {"id": 3, "type": "t", "started_at": T0 + 5}, None), T0,
     "working on #3 for 0m 0s"),  # clocks of two hosts: never a negative duration
    (row("idle"), T0, "idle"), (row("stopping"), T0, "stopping"), (row(None), T0, ""),
    (row("working", None), T0, "working"),  # an old agent's heartbeat without a task
])
def test_activity_text(agent, now, text):
    from coffee_team.status import activity_text
    assert activity_text(agent, now) == text
