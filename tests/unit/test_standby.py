"""Standby instances on a shared PostgreSQL, without processes or a database: the holder an
advisory lock names, the heartbeat and status of a standby, and the wait that ends in a
take-over (finding 12 of issue 18; the real fail-over is in test_pg_failover.py)."""
from __future__ import annotations

import datetime
import json
import os
import socket

import pytest

from coffee_team import status
from coffee_team.cli import hosts
from coffee_team.errors import TeamError
from coffee_team.heartbeat import read_heartbeat
from coffee_team.agent.locks import HOST_IN_APP_NAME, Holder, PgAgentLock, application_name, \
    describe_holder
from coffee_team.liveness import standby_text
from coffee_team.agent.standby import Standby, StandbyEnded, standby_beat
from tests.fast_team import temp_root, write_team

SINCE = datetime.datetime(2024, 5, 1, 10, 0, 0)


# --- who holds the lock ------------------------------------------------------------------------

@pytest.mark.parametrize("name, host", [
    ("w0", "a"),
    ("a" * 64, "host-b.example.com"),                    # the agent name is what gets cut
    ("architect", "h" * 60),                             # a long host keeps its first 40
])
def test_application_name_fits_and_names_the_host(name, host):
    app = application_name(name, 4194304, host)
    assert len(app) <= 63
    holder = describe_holder((app, None, SINCE))
    assert holder == Holder(host[:HOST_IN_APP_NAME], 4194304,
                            f"PID 4194304 on host {host[:HOST_IN_APP_NAME]}, "
                            f"started 2024-05-01 10:00:00")
    lock = PgAgentLock("postgresql://u@h/db", name, host=host)
    assert lock.is_here(holder)
    assert not PgAgentLock("postgresql://u@h/db", name, host="elsewhere").is_here(holder)


def test_a_holder_that_is_not_coffee_team_or_gone():
    assert describe_holder(("psql", "10.0.0.9", None)) == Holder(
        None, None, "session psql from 10.0.0.9")
    assert describe_holder(None) == Holder(None, None, "unknown holder")
    assert PgAgentLock("postgresql://u@h/db", "w0").host == socket.gethostname()


# --- what a standby shows ------------------------------------------------------------------

HOLDER_A = Holder("a", 123, "PID 123 on host a, started 2024-05-01 10:00:00")


def test_standby_heartbeat_and_text():
    beat = standby_beat("w0", 77, HOLDER_A, started_at=10.0, now=12.5)
    assert beat == {"agent": "w0", "pid": 77, "state": "standby", "current_task": None,
                    "standby_for": {"host": "a", "pid": 123, "holder": HOLDER_A.text},
                    "started_at": 10.0, "last_heartbeat": 12.5, "trouble": []}
    assert standby_text(beat["standby_for"]) == "standby: running on host a (PID 123)"
    unknown = standby_beat("w0", 77, Holder(None, None, "unknown holder"), 10.0, 12.5)
    assert unknown["standby_for"] == {"holder": "unknown holder"}  # no None for XML-RPC
    assert standby_text(unknown["standby_for"]) == "standby: running elsewhere"


def _row(agent_state, **extra):
    return {"name": "w0", "state": "RUNNING", "pid": 77, "agent_state": agent_state, **extra}


def test_a_standby_is_running_for_supervisor_but_not_counted_as_running_the_agent():
    standby = _row("standby", standby_for={"host": "a", "pid": 123})
    assert status.activity_text(standby, now=0) == "standby: running on host a (PID 123)"
    assert status.is_standby(standby) and not status.is_active(standby)
    assert status.is_active(_row("idle")) and not status.is_standby(_row("idle"))
    assert not status.is_standby({**standby, "state": "STOPPED"})


def test_status_over_hosts_shows_each_hosts_view():
    def host(name, row):
        row.update(uptime_seconds=5, cpu_percent=0.0, rss_mb=20.0, heartbeat_age_seconds=0.4,
                   restarts=0, given_up=False, activity=status.activity_text(row, 0))
        return {"name": name, "url": f"unix:///{name}.sock", "reachable": True,
                "status": {"agents": [row]}}
    entries = [host("a", _row("idle")),
               host("b", _row("standby", standby_for={"host": "a", "pid": 123}))]
    data = {"hosts": entries, "hosts_reachable": 2, "agents_running": 1, "agents_standby": 1,
            "agents_total": 2}
    text = hosts.render(data)
    assert "agents running 1/2, 1 standby" in text
    line_a, line_b = [line for line in text.splitlines() if " w0 " in line]
    assert line_a.startswith("a ") and line_a.endswith("idle") and "GIVEN UP" not in line_a
    assert line_b.startswith("b ") and line_b.endswith("standby: running on host a (PID 123)")


def test_status_of_one_host_counts_its_standby():
    with temp_root() as root:
        team = write_team(root, {"w0": {}, "w1": {}})
        beat = standby_beat("w0", os.getpid(), HOLDER_A, 1.0, 2.0)
        (team.status_dir / "w0_status.json").write_text(json.dumps(beat))
        infos = [{"name": n, "statename": "RUNNING", "pid": os.getpid(), "start": 1,
                  "description": ""} for n in ("w0", "w1")]
        data = status.collect(team, infos, os.getpid(), now=3.0)
    assert (data["agents_running"], data["agents_standby"], data["agents_total"]) == (1, 1, 2)
    w0 = next(a for a in data["agents"] if a["name"] == "w0")
    assert w0["standby_for"]["host"] == "a"
    text = status.render(data)
    assert "Agents Running: 1/2 (1 standby)" in text
    assert "standby: running on host a (PID 123)" in text.split("w0: RUNNING (PID")[1]


# --- the wait --------------------------------------------------------------------------------

class FakeLock:
    """PgAgentLock.take(): the holders (or errors) it answers, then None (the lock is ours)."""

    def __init__(self, *answers):
        self.name = "w0"
        self.answers = list(answers)

    def take(self):
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer


def _standby(team, lock, clock=None):
    times = iter(range(100))
    clock = clock or (lambda: float(next(times)))
    return Standby(team, lock, HOLDER_A, clock=clock, sleep=lambda seconds: None, mono=clock)


def test_standby_waits_beating_then_takes_over(capfd):
    import sqlite3
    holder_c = Holder("c", 9, "PID 9 on host c")
    with temp_root() as root:
        team = write_team(root, {"w0": {}})
        lock = FakeLock(HOLDER_A, sqlite3.OperationalError("gone"),
                        sqlite3.OperationalError("gone"), holder_c)
        beats = []
        standby = _standby(team, lock)
        standby._beat = lambda now, state="standby": beats.append(
            (state, standby.holder.host, standby.trouble is not None))
        assert standby.wait() == holder_c  # taken over from the last holder seen
        assert ("standby", "a", False) in beats and ("standby", "a", True) in beats
        assert ("standby", "c", False) in beats
    log = capfd.readouterr().err
    assert log.count("database unavailable") == 1 and "database recovered" in log
    assert "now runs on host c" in log and "took over from host c" in log


def test_a_stopped_standby_leaves_a_stopped_heartbeat():
    with temp_root() as root:
        team = write_team(root, {"w0": {}})

        def stop(seconds):
            raise StandbyEnded("stopped by signal SIGTERM")
        standby = Standby(team, FakeLock(HOLDER_A), HOLDER_A, sleep=stop)
        with pytest.raises(StandbyEnded):
            standby.wait()
        beat = read_heartbeat(team.status_dir, "w0")
    assert beat["state"] == "stopped" and beat["standby_for"]["host"] == "a"


# --- this host's name ------------------------------------------------------------------------

def test_host_name_setting():
    with temp_root() as root:
        assert write_team(root, {"w0": {}}).host == socket.gethostname()
        assert write_team(root, {"w0": {}}, host_name="db-host-2").host == "db-host-2"
        with pytest.raises(TeamError, match=r"team.host_name: expected a host name"):
            write_team(root, {"w0": {}}, host_name="two words")
