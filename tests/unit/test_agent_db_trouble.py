"""agent.Agent's loop on database trouble: locked or unusable databases are retried with
backoff, the heartbeat goes on, a stop still exits cleanly.

Same rig as test_agent_loop.py (tests/agent_rig.py): the real ``run()`` on a real MessageQueue in
a throwaway SQLite file seen through ``ScriptedQueue``, on a fake clock. No test sleeps more
than a few ms.
"""
from __future__ import annotations

import sqlite3

import peewee
import pytest

from coffee_team.agent import runtime as agent_module
from coffee_team.handlers import HandlerError
from coffee_team.heartbeat import heartbeat_path
from tests.agent_rig import echo, LOCKED, log_lines
from tests.agent_rig import signals_restored, start  # noqa: F401 (fixtures)


# --- database trouble ------------------------------------------------------------------------

def test_locked_database_is_retried_with_backoff_and_the_heartbeat_goes_on(start, capsys):
    h = start(echo)
    task_id = h.send()
    h.queue.fail("claim", LOCKED, times=8)
    beats = []

    def beat(seconds):  # what the heartbeat thread would write during this pause
        h.agent.write_status()
        beats.append(h.status())
    h.time.on_sleep = beat

    assert h.run() == 0

    assert h.task(task_id)["status"] == "completed"
    pauses = h.time.sleeps
    assert len(pauses) == 8 and 0 < pauses[0] <= 0.1
    assert all(b == min(a * 2, agent_module.DB_RETRY_MAX) for a, b in zip(pauses, pauses[1:]))
    assert pauses[-1] == agent_module.DB_RETRY_MAX  # capped, not growing without bound
    # Still alive while waiting: a fresh heartbeat before every pause, marked as trouble.
    assert all(b["trouble"] == ["database"] and b["state"] != "stopped" for b in beats)
    stamps = [b["last_heartbeat"] for b in beats]
    assert stamps == sorted(set(stamps)) and len(stamps) == 8
    assert h.status()["trouble"] == []
    err = capsys.readouterr().err
    assert err.count("database unavailable: OperationalError: database is locked") == 1
    assert err.count("database recovered") == 1


@pytest.mark.parametrize("method", ["claim", "complete_and_claim", "mark_failed",
                                    "send_many"])
@pytest.mark.parametrize("error", [LOCKED, peewee.OperationalError("database is locked"),
                                   sqlite3.DatabaseError("database disk image is malformed"),
                                   peewee.InterfaceError("connection already closed")],
                         ids=["sqlite3-locked", "peewee-locked", "sqlite3-malformed",
                              "peewee-closed"])
def test_every_queue_write_survives_database_errors(start, method, error):
    """Claim, completion, failure and the periodic run's follow-ups all wait out a database
    that is briefly unusable, then do their work."""
    def work(task, ctx):
        if task["content"] == "fail":
            raise HandlerError("no")
        return None

    h = start(work, periodic=lambda task, ctx: ctx.send("reviewer", "review", {}))
    done, failed = h.send(content="ok"), h.send(content="fail")
    h.queue.fail(method, error, times=2)

    assert h.run() == 0

    assert (h.task(done)["status"], h.task(failed)["status"]) == ("completed", "failed")
    assert len(h.tasks(agent="reviewer")) == 1
    assert len(h.time.sleeps) == 2
    assert h.queue.calls.count(method) >= 3


def test_stop_while_the_database_is_unusable_exits_cleanly(start, capsys):
    """The stop arrives during a failing operation: the agent does not retry on, it exits,
    and what it could not requeue stays for the next instance (or the watchdog)."""
    h = start(echo)
    held = h.send()
    h.real.claim("worker", 1)

    h.queue.before("claim", h.stop)  # in the database: only noted, never raised there
    h.queue.fail("claim", LOCKED, times=None)
    h.queue.fail("requeue_agent", LOCKED, times=None)

    assert h.run() == 0

    assert h.time.sleeps == []  # no retry once stopping
    assert h.queue.calls.count("claim") == 1
    assert h.task(held)["status"] == "in_progress"
    assert h.status()["state"] == "stopped"
    assert log_lines(capsys, "could not requeue unfinished tasks")


def test_unwritable_status_file_does_not_stop_the_work(start, capsys):
    h = start(echo)
    heartbeat_path(h.team.status_dir, h.agent.name).mkdir()  # os.replace() onto a directory fails: OSError
    task_id = h.send()
    assert h.run() == 0
    assert h.task(task_id)["status"] == "completed"
    assert len(log_lines(capsys, "cannot write")) == 1  # once per episode, not per beat


def test_the_heartbeat_says_since_when_it_waits_for_the_database(start):
    """Issue 26 (partitions): a database call that takes long, or is retried, shows in the
    heartbeat as a wait for the database since its first try, never as a hang."""
    h = start(echo)
    h.send()
    h.queue.fail("claim", LOCKED, times=3)
    beats = []

    def beat(seconds):
        h.agent.write_status()
        beats.append(h.status())
    h.time.on_sleep = beat
    assert h.run() == 0
    assert beats and all(b["waiting_for"] == "database" for b in beats)
    since = {b["waiting_since"] for b in beats}
    assert len(since) == 1 and None not in since  # the first try's time, through the retries
    assert h.status()["waiting_for"] is None and h.status()["waiting_since"] is None
