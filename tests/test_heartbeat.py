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
