"""Two hosts (two supervisords, ``host_name`` a and b) list the same agent on one PostgreSQL
database: b's instance is a standby, not a crash, and takes over when a's dies by kill -9
(finding 12 of issue 18). Needs COFFEE_TEST_PG_URL, like test_pg_scaleout.py."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from urllib.parse import urlsplit

import pytest

from coffee_team.heartbeat import read_heartbeat
from tests.harness import boot_supervisord, temporary_project, wait_until
from tests.integration.test_pg_scaleout import _admin, needs_pg, pg_db  # noqa: F401  (pg_db: a fixture)

AGENT = "solo"


@needs_pg
def test_a_reapers_requeue_leaves_an_agent_running_on_any_host_alone(pg_db):
    from coffee_team.queue import MessageQueue
    from coffee_team.agent.locks import PgAgentLock
    url, _ = pg_db
    with MessageQueue(url) as q:
        q.send("cli", "reap_probe", "t")
        [task] = q.claim("reap_probe")
        running = PgAgentLock(url, "reap_probe", host="b").acquire()  # its instance on host b
        try:
            assert q.requeue_agent("reap_probe", unless_running=True) == 0
            assert q.get_task(task.id)["status"] == "in_progress"
        finally:
            running.release()
        assert q.requeue_agent("reap_probe", unless_running=True) == 1
        PgAgentLock(url, "reap_probe").acquire().release()  # the check's lock ended with it


@needs_pg
def test_the_server_drops_a_vanished_holders_lock_within_seconds(pg_db):
    """A host that vanishes sends no FIN: PostgreSQL's own keepalives end its session."""
    from coffee_team.queue.locks import AdvisoryLockSession
    url, _ = pg_db
    if not urlsplit(url).hostname:
        pytest.skip("a unix socket has no TCP keepalives")
    session = AdvisoryLockSession(url, application_name="keepalive probe")
    try:
        settings = [session._fetchone(f"SHOW tcp_keepalives_{name}")[0]
                    for name in ("idle", "interval", "count")]
    finally:
        session.close()
    assert settings == ["10", "3", "3"]


@pytest.fixture
def hosts_a_b(pg_db):
    url, _ = pg_db
    with contextlib.ExitStack() as stack:
        projects = {}
        for host in ("a", "b"):
            proj = projects[host] = stack.enter_context(temporary_project(prefix=f"cf{host}-"))
            proj.write_team({AGENT: {"priority": 1, "check_interval": 3600,
                                     "options": {"work_seconds": 0.01}}},
                            database_path=url, host_name=host)
        yield projects


def _beat(proj) -> dict:
    return read_heartbeat(proj.team.status_dir, AGENT)


def _agent_row(status: dict) -> dict:
    return next(a for a in status["agents"] if a["name"] == AGENT)


def _send(url, tag, n):
    from coffee_team.queue import MessageQueue
    with MessageQueue(url, agents=(AGENT,), max_queue_size=10000) as q:
        q.send_many([{"sender": "test", "recipient": AGENT, "type": tag, "content": {"i": i}}
                     for i in range(n)])


def _completed_once(url, n) -> bool:
    rows = _admin("SELECT status, COUNT(*) FROM tasks WHERE type LIKE 'fo_%' GROUP BY status",
                  url)
    return dict(rows) == {"completed": n}


@needs_pg
@pytest.mark.slow
def test_second_host_stands_by_and_takes_over_after_kill_9(hosts_a_b, pg_db):
    url, _ = pg_db
    a, b = hosts_a_b["a"], hosts_a_b["b"]
    boot_supervisord(a)
    pid_a = a.wait_states("RUNNING")[AGENT]["pid"]
    wait_until(lambda: _beat(a).get("state") == "idle", 15, message="a's agent active")
    boot_supervisord(b)
    b.wait_states("RUNNING")
    wait_until(lambda: _beat(b).get("state") == "standby", 15, message="b's agent standby")
    time.sleep(2)  # past startsecs and a health check: no FATAL, no crash, no give-up

    # b: RUNNING as a standby that says where the agent runs; nobody counts a crash.
    row_b = _agent_row(b.rpc().coffee.getTeamStatus())
    assert (row_b["state"], row_b["agent_state"]) == ("RUNNING", "standby")
    assert row_b["activity"] == f"standby: running on host a (PID {pid_a})"
    assert (row_b["restarts"], row_b["given_up"]) == (0, False)
    spec = ",".join(f"{h}=unix://{p.root}/data/run/supervisor.sock" for h, p in hosts_a_b.items())
    over = json.loads(a.cli("status", "--hosts", spec, "--json", check=True).stdout)
    row_a = _agent_row(over["hosts"][0]["status"])
    assert (row_a["state"], row_a["agent_state"], row_a["given_up"]) == ("RUNNING", "idle", False)
    assert (over["agents_running"], over["agents_standby"]) == (1, 1)
    assert "GIVEN UP" not in a.cli("status", "--hosts", spec, check=True).stdout

    # kill -9 of a's running instance while tasks flow: b takes over within seconds.
    _send(url, "fo_before", 150)
    time.sleep(0.3)
    killed_at = time.time()
    os.kill(pid_a, signal.SIGKILL)
    _send(url, "fo_during", 50)
    took_over = wait_until(lambda: _admin(
        "SELECT ts, detail FROM events WHERE kind = 'took_over'", url), 15,
        message="b to take over")
    failover = took_over[0][0] - killed_at
    print(f"fail-over after kill -9: {failover:.2f}s")
    assert json.loads(took_over[0][1])["from_host"] == "a" and failover < 5
    _send(url, "fo_after", 50)
    wait_until(lambda: _completed_once(url, 250), 60, interval=0.2, message="250 tasks done")
    metrics = _admin("SELECT COUNT(*) FROM metrics WHERE task_type LIKE 'fo_%'", url)[0][0]
    assert metrics == 250  # each completed exactly once
    assert _beat(b)["pid"] == b.infos()[AGENT]["pid"] and _beat(b)["state"] != "standby"

    # a's watchdog restarts its own agent after the backoff: it finds b active, stands by.
    wait_until(lambda: _beat(a).get("state") == "standby", 20, message="a's agent standby")
    assert _beat(a)["standby_for"]["host"] == "b"
    row_a = _agent_row(a.rpc().coffee.getTeamStatus())
    assert (row_a["state"], row_a["restarts"], row_a["given_up"]) == ("RUNNING", 1, False)
    row_b = _agent_row(b.rpc().coffee.getTeamStatus())
    assert (row_b["restarts"], row_b["given_up"]) == (0, False)  # a's crash is a's alone

    # A standby stops at once (it holds nothing) and leaves the active instance alone.
    started = time.monotonic()
    a.rpc().supervisor.stopProcess(AGENT)
    assert time.monotonic() - started < 2 and _beat(a)["state"] == "stopped"
    assert b.infos()[AGENT]["statename"] == "RUNNING", _beat(b)
    assert _beat(b)["state"] in ("idle", "working"), _beat(b)
