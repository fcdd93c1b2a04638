"""The heartbeat file: one path, one writer, one reader (no processes, no clock)."""
from __future__ import annotations

import stat

import pytest

from coffee_team.heartbeat import (ReadyInbox, announce_ready, heartbeat_path, last_beat,
                                   read_heartbeat, ready_socket_path, write_heartbeat)


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


def row(state, task=None, last_output_at=None, progress=None):
    return {"agent_state": state, "current_task": task, "last_output_at": last_output_at,
            "progress": progress}


def limited(started_at, limit, task_id=42):
    return {"id": task_id, "type": "t", "started_at": started_at, "deadline": started_at + limit}


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
    # the time left when the task has a limit, and the current step
    (row("working", limited(T0, 7200), T0 + 4320), T0 + 4320,
     "working on #42 for 1h 12m, 48m left"),
    (row("working", limited(T0, 7200), T0 + 4320, "Bash: pytest -q"), T0 + 4320,
     "working on #42 for 1h 12m, 48m left: Bash: pytest -q"),
    (row("working", limited(T0, 4 * 3600), T0), T0 + 4320,
     "working on #42 for 1h 12m, 2h 48m left, no output for 1h 12m"),
    (row("working", limited(T0, 60), T0 + 15), T0 + 15, "working on #42 for 0m 15s, 45s left"),
    (row("working", limited(T0, 60), T0 + 60), T0 + 60,
     "working on #42 for 1m 0s, at its time limit"),
    (row("working", limited(T0, 60), T0 + 90), T0 + 90,
     "working on #42 for 1m 30s, at its time limit"),
    (row("working", {"id": 9, "type": "t", "started_at": T0, "deadline": None}, T0 + 5,
         "Edit src/cli.py"), T0 + 5, "working on #9 for 0m 5s: Edit src/cli.py"),
])
def test_activity_text(agent, now, text):
    from coffee_team.status import activity_text
    assert activity_text(agent, now) == text


# --- the ready poke --------------------------------------------------------------------------

def test_ready_poke_reaches_the_inbox_and_names_the_agents(tmp_path):
    with ReadyInbox(tmp_path) as inbox:
        assert inbox.wait(0) == set()
        announce_ready(tmp_path, "architect")
        announce_ready(tmp_path, "code_developer")
        announce_ready(tmp_path, "architect")
        assert inbox.wait(5) == {"architect", "code_developer"}  # returns at the first poke
        assert inbox.wait(0) == set()
        assert oct(ready_socket_path(tmp_path).stat().st_mode & 0o777) == oct(0o600)
    assert not ready_socket_path(tmp_path).exists()  # closed: nothing left behind


def test_ready_poke_without_a_listener_is_silent(tmp_path):
    announce_ready(tmp_path, "architect")  # no socket at all
    announce_ready(tmp_path / "missing" / "dir", "architect")


def test_ready_inbox_replaces_a_socket_left_by_a_dead_watchdog(tmp_path):
    import socket
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(ready_socket_path(tmp_path)))
    stale.close()  # the file stays, nobody reads it
    with ReadyInbox(tmp_path) as inbox:
        announce_ready(tmp_path, "assistant")
        assert inbox.wait(5) == {"assistant"}


def test_ready_socket_path_too_long_for_unix_sockets_means_no_socket(tmp_path):
    deep = tmp_path / ("d" * 120)
    assert ready_socket_path(deep) is None
    announce_ready(deep, "architect")  # nothing to poke, no error
    with ReadyInbox(deep) as inbox:
        assert inbox.sock is None
        assert inbox.wait(0) == set()  # the launch then reads heartbeat files on its timer
