"""Scale-out: the queue on PostgreSQL and one team over several hosts (supervisord instances).

The PostgreSQL tests need COFFEE_TEST_PG_URL (``.ci/run`` sets it); each run creates a
temporary database ``coffee_test_<random>`` next to it and drops it at the end.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from coffee_team.errors import DatabaseUrlError, QueueError, TeamError
from coffee_team.queue.factory import open_database
from coffee_team.cli.hosts import parse_hosts_option
from coffee_team.team import parse_team
from tests.harness import BIN, boot_supervisord, shutdown_supervisord, temporary_project, wait_until

PG_URL = os.environ.get("COFFEE_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set COFFEE_TEST_PG_URL to run PostgreSQL tests")


# --- no database needed --------------------------------------------------------------------

def _team(database_path=None, **extra):
    team = {} if database_path is None else {"database_path": database_path}
    return parse_team({"team": team, "agents": {"a": {}}, **extra}, "t.yaml",
                      Path("/proj/data/team.yaml"))


def test_database_url_forms():
    assert _team().database_url == "/proj/data/orchestrator.db"
    assert _team("sqlite:///data/q.db").database_url == "/proj/data/q.db"
    assert _team("sqlite:////var/q.db").database_url == "/var/q.db"
    assert _team("/abs/q.db").database_url == "/abs/q.db"
    pg = "postgresql://u@db.example:5432/team?sslmode=require"
    assert _team(pg).database_url == pg and _team(pg).is_postgres
    assert not _team("sqlite:///data/q.db").is_postgres


@pytest.mark.parametrize("bad, expected", [
    ("mysql://u@h/db", "unsupported scheme 'mysql'"),
    ("sqlite://rel.db", "sqlite:///relative/path.db"),
    ("postgresql://u@h", "naming a database"),
])
def test_bad_database_url_is_one_line_team_error(bad, expected):
    with pytest.raises(TeamError) as info:
        _team(bad)
    assert "team.database_path" in str(info.value) and expected in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_database_url_is_a_queue_error():
    with pytest.raises(QueueError, match="unsupported database URL"):
        open_database("mysql://u@h/db")
    assert issubclass(DatabaseUrlError, ValueError)


def test_hosts_section_and_option():
    team = _team(hosts=[{"name": "a", "url": "unix:///tmp/a.sock"},
                        {"name": "b", "url": "http://10.0.0.2:9001", "username": "ops",
                         "password_env": "B_PASS"}])
    assert [(h.name, h.url, h.username, h.password_env) for h in team.hosts] == [
        ("a", "unix:///tmp/a.sock", None, None), ("b", "http://10.0.0.2:9001", "ops", "B_PASS")]
    with pytest.raises(TeamError, match=r"hosts\[0\]: missing url"):
        _team(hosts=[{"name": "a"}])
    with pytest.raises(TeamError, match=r"hosts\[1\].name: duplicate"):
        _team(hosts=[{"name": "a", "url": "unix:///a"}, {"name": "a", "url": "unix:///b"}])
    hosts = parse_hosts_option("A=unix:///tmp/a.sock,http://h:9001")
    assert [(h.name, h.url) for h in hosts] == [("A", "unix:///tmp/a.sock"),
                                                 ("http://h:9001", "http://h:9001")]
    with pytest.raises(TeamError, match="--hosts"):
        parse_hosts_option("ftp://x")


# --- PostgreSQL ------------------------------------------------------------------------------

def _admin(sql: str, url: str | None = None):
    import psycopg2
    conn = psycopg2.connect(url or PG_URL)
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def _kill_backends(dbname: str) -> int:
    """What a server restart does to the clients, without restarting the shared server."""
    rows = _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  f" WHERE datname = '{dbname}' AND pid <> pg_backend_pid()")
    return len(rows)


def _sessions(dbname: str) -> int:
    return _admin("SELECT COUNT(*) FROM pg_stat_activity"
                  f" WHERE datname = '{dbname}' AND pid <> pg_backend_pid()")[0][0]


@pytest.fixture(scope="module")
def pg_db():
    """A temporary database: (url, name); dropped (after its sessions are ended) at the end."""
    if not PG_URL:
        pytest.skip("set COFFEE_TEST_PG_URL to run PostgreSQL tests")
    with temporary_database("coffee_test_") as made:
        yield made


@contextlib.contextmanager
def temporary_database(prefix: str):
    """(url, name) of a new database, dropped (after its sessions are ended) at the end."""
    name = prefix + uuid.uuid4().hex[:10]
    _admin(f"CREATE DATABASE {name}")
    parts = urlsplit(PG_URL)
    url = urlunsplit(parts._replace(path="/" + name))
    try:
        yield url, name
    finally:
        for _ in range(50):
            _kill_backends(name)
            try:
                _admin(f"DROP DATABASE IF EXISTS {name}")
                break
            except Exception:
                time.sleep(0.1)


@pytest.mark.slow  # starts a process
@needs_pg
def test_wait_wakes_through_listen_notify_across_processes(pg_db):
    """No wake_dir at all: the wake-up can only come through LISTEN/NOTIFY."""
    from coffee_team.queue import MessageQueue
    url, _ = pg_db
    with MessageQueue(url) as consumer:
        assert consumer.wait("notify_probe", timeout=0) is False  # LISTENs from here on
        sender = subprocess.Popen([str(BIN / "python"), "-c",
                                   "import sys, time; from coffee_team.queue import MessageQueue\n"
                                   "q = MessageQueue(sys.argv[1]); time.sleep(0.3)\n"
                                   "print(time.time()); q.send('cli', 'notify_probe', 't')",
                                   url], stdout=subprocess.PIPE, text=True)
        started = time.monotonic()
        assert consumer.wait("notify_probe", timeout=10) is True
        woke = time.time()
        sent_at = float(sender.communicate(timeout=10)[0])
        assert time.monotonic() - started < 5
        assert woke - sent_at < 0.5  # typically ~1 ms
        assert [t.type for t in consumer.claim("notify_probe")] == ["t"]
        # Idle: blocks in select() for the whole timeout without burning CPU.
        cpu = time.process_time()
        t0 = time.monotonic()
        assert consumer.wait("notify_probe", timeout=0.5) is False
        assert time.monotonic() - t0 >= 0.45 and time.process_time() - cpu < 0.05


@needs_pg
def test_queue_and_listener_reconnect_after_connection_loss(pg_db):
    from coffee_team.queue import MessageQueue
    url, name = pg_db
    with MessageQueue(url) as q:
        q.send("cli", "reconnect_probe", "before")
        assert q.wait("reconnect_probe", 0) is True
        assert _kill_backends(name) >= 2  # queue connection + LISTEN connection
        time.sleep(0.1)
        # A connection the server closed while idle is replaced once, transparently: the
        # write's BEGIN, the read and the LISTEN each reconnect without an error.
        q.send("cli", "reconnect_probe", "after")
        assert q.wait("reconnect_probe", 0) is True
        assert q.has_work("reconnect_probe")
        _kill_backends(name)
        time.sleep(0.1)
        assert [t.type for t in q.claim("reconnect_probe", limit=5)] == ["before", "after"]


@needs_pg
def test_hot_statements_are_prepared_once_per_connection_and_again_after_a_reconnect(pg_db):
    from coffee_team.queue import MessageQueue
    url, name = pg_db
    prepared = "SELECT name FROM pg_prepared_statements WHERE name LIKE 'coffee_%'"
    with MessageQueue(url) as q:
        first = q.send("cli", "prepare_probe", "a")
        q.send("cli", "prepare_probe", "b")
        (task,) = q.claim("prepare_probe")
        assert {"coffee_pg_send_one", "coffee_claim_ready"} <= {
            n for (n,) in q.backend.fetchall(prepared)}
        _kill_backends(name)
        time.sleep(0.1)
        done, (nxt,) = q.complete_and_claim(first, {"ok": 1}, agent="prepare_probe")
        assert done and nxt.type == "b"
        # the new session had none of them: what ran on it was prepared on it
        assert {n for (n,) in q.backend.fetchall(prepared)} == {"coffee_pg_complete_and_claim"}
        assert q.complete_and_claim(nxt.id, agent="prepare_probe") == (True, [])


@needs_pg
def test_advisory_lock_is_single_across_connections_and_retaken(pg_db):
    from coffee_team.errors import AgentAlreadyRunningError
    from coffee_team.agent.locks import PgAgentLock
    url, name = pg_db
    taken = []
    first = PgAgentLock(url, "lock_probe", on_taken=taken.append).acquire()
    try:
        with pytest.raises(AgentAlreadyRunningError,
                           match=rf"PID {os.getpid()} on host \S+, started .*advisory lock"):
            PgAgentLock(url, "lock_probe").acquire()
        PgAgentLock(url, "other_probe").acquire().release()  # other names are independent
        _kill_backends(name)
        wait_until(lambda: first.reacquired == 1, 10, message="the lock to be taken again")
        with pytest.raises(AgentAlreadyRunningError):
            PgAgentLock(url, "lock_probe").acquire()
        assert taken == []
    finally:
        first.release()
    PgAgentLock(url, "lock_probe").acquire().release()


# --- two supervisord "hosts", 8 agents, one PostgreSQL database ------------------------------

HOST_AGENTS = {"A": [f"w{i}" for i in range(4)], "B": [f"w{i}" for i in range(4, 8)]}
ALL_AGENTS = HOST_AGENTS["A"] + HOST_AGENTS["B"]


def _agents(names):
    return {n: {"priority": 1, "check_interval": 3600, "handler": "coffee_team.agent.demo:handle",
                "options": {"work_seconds": 0.005}} for n in names}


@pytest.fixture(scope="module")
def hosts(pg_db):
    url, _ = pg_db
    with contextlib.ExitStack() as stack:
        projects = {host: stack.enter_context(temporary_project(prefix=f"ct{host}-"))
                    for host in HOST_AGENTS}
        for host, names in HOST_AGENTS.items():
            projects[host].write_team(_agents(names), database_path=url)
        for proj in projects.values():
            boot_supervisord(proj)
        for proj in projects.values():
            proj.wait_states("RUNNING", timeout=60)
        yield projects


def _pids(proj):
    return {i["name"]: i["pid"] for i in proj.rpc().supervisor.getAllProcessInfo()}


def _send_jobs(url, n, tag):
    from coffee_team.queue import MessageQueue
    with MessageQueue(url, agents=ALL_AGENTS, max_queue_size=100000) as q:
        q.send_many([{"sender": "test", "recipient": ALL_AGENTS[i % 8], "type": tag,
                      "content": {"i": i}} for i in range(n)])


def _job_rows(url, tag):
    return _admin(f"SELECT status, attempts, claimed_by, recipient FROM tasks WHERE type = '{tag}'",
                  url)


def _completed(url, tag) -> int:
    return _admin(f"SELECT COUNT(*) FROM tasks WHERE type = '{tag}' AND status = 'completed'",
                  url)[0][0]


def _wait_done(url, tag, n, timeout):
    wait_until(lambda: sum(1 for r in _job_rows(url, tag) if r[0] == "completed") == n,
               timeout, interval=0.2, message=f"{n} {tag} tasks completed")
    rows = _job_rows(url, tag)
    assert len(rows) == n
    assert all(status == "completed" and attempts == 1 and by == rcpt
               for status, attempts, by, rcpt in rows), "a task was claimed twice or lost"
    metrics = _admin(f"SELECT COUNT(*) FROM metrics WHERE task_type = '{tag}'", url)[0][0]
    assert metrics == n  # each completion bookkept exactly once


@needs_pg
@pytest.mark.slow
def test_two_hosts_consume_one_queue(hosts, pg_db):
    url, _ = pg_db
    started = time.monotonic()
    _send_jobs(url, 800, "job")
    _wait_done(url, "job", 800, timeout=60)
    elapsed = time.monotonic() - started
    per_agent = dict(_admin("SELECT claimed_by, COUNT(*) FROM tasks WHERE type = 'job'"
                            " GROUP BY claimed_by", url))
    assert per_agent == {name: 100 for name in ALL_AGENTS}
    print(f"800 tasks over 8 agents on 2 hosts in {elapsed:.2f}s")


@needs_pg
@pytest.mark.slow
def test_singleton_holds_across_hosts(hosts, pg_db):
    url, _ = pg_db
    host_a, host_b = hosts["A"], hosts["B"]
    pid = _pids(host_a)["w0"]
    # Host B gets a team file that also lists w0 (running on host A) and tries to start it.
    team_b_all = host_b.root / "data" / "team_all.yaml"
    doc = yaml.safe_load(host_b.team_file.read_text())
    doc["agents"] = _agents(ALL_AGENTS)
    team_b_all.write_text(yaml.safe_dump(doc))
    result = subprocess.run([str(BIN / "coffee-team"), "--team", str(team_b_all), "agent", "run",
                             "w0"], capture_output=True, text=True, timeout=30, cwd=host_b.root,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert "AgentAlreadyRunningError: agent w0 is already running" in result.stderr
    assert f"PID {pid} on host " in result.stderr
    assert _pids(host_a)["w0"] == pid
    held = _admin("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                  " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                  url)[0][0]
    assert held == 8


@needs_pg
@pytest.mark.slow
def test_connection_loss_mid_run_loses_and_duplicates_nothing(hosts, pg_db):
    url, name = pg_db
    before = {host: _pids(proj) for host, proj in hosts.items()}
    _send_jobs(url, 1600, "loss")
    for _ in range(3):  # kill every session of the database (the agents', supervisord's) mid-run
        # Each kill once the agents are back: how soon they reconnect is the machine's (with
        # two CPU hogs, 8-15 sessions were back 0.15 s after a kill, 16 after ~0.4 s).
        wait_until(lambda: _sessions(name) >= 16, 15, message="the agents' sessions back")
        assert _completed(url, "loss") < 1600, "the run ended before the kill"
        assert _kill_backends(name) >= 16
    _wait_done(url, "loss", 1600, timeout=90)
    # The agents reconnected instead of crashing: same processes, locks taken again.
    assert {host: _pids(proj) for host, proj in hosts.items()} == before
    wait_until(lambda: _admin("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'"
                              " AND granted", url)[0][0] >= 8, 15, message="8 advisory locks")
    log = (hosts["A"].root / "data" / "logs").glob("w0*.log")
    text = "".join(p.read_text(errors="replace") for p in log)
    assert "advisory lock taken again" in text


@needs_pg
@pytest.mark.slow
def test_status_over_hosts_marks_a_host_that_is_down(hosts):
    host_a, host_b = hosts["A"], hosts["B"]
    spec = ",".join(f"{h}=unix://{p.root}/data/run/supervisor.sock" for h, p in hosts.items())
    result = host_a.cli("status", "--hosts", spec, "--json", check=True)
    data = json.loads(result.stdout)
    assert [(h["name"], h["reachable"]) for h in data["hosts"]] == [("A", True), ("B", True)]
    assert data["agents_running"] == data["agents_total"] == 8
    text = host_a.cli("status", "--hosts", spec, check=True).stdout
    assert "HOST" in text and all(name in text for name in ALL_AGENTS)
    # The team file's hosts: list works the same way.
    doc = yaml.safe_load(host_a.team_file.read_text())
    doc["hosts"] = [{"name": h, "url": f"unix://{p.root}/data/run/supervisor.sock"}
                    for h, p in hosts.items()]
    host_a.team_file.write_text(yaml.safe_dump(doc))
    assert "agents running 8/8" in host_a.cli("status", check=True).stdout

    shutdown_supervisord(host_b)
    result = host_a.cli("status", "--hosts", spec)
    assert result.returncode == 0, result.stderr
    assert "host B: not reachable (" in result.stdout
    assert "agents running 4/4" in result.stdout
    data = json.loads(host_a.cli("status", "--hosts", spec, "--json", check=True).stdout)
    assert data["hosts"][1]["reachable"] is False and data["hosts"][1]["error"]
    down = host_a.cli("status", "--hosts", f"B=unix://{host_b.root}/data/run/supervisor.sock")
    assert down.returncode == 3 and "host B: not reachable" in down.stdout
