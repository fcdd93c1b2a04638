"""What runs an agent team on Kubernetes besides the manifests (issue 27): the database URL
from the environment, the agents' probes and the priority groups' wait (pure rules and the CLI
on a SQLite file), status --k8s, and the control plane's round (requeue, health) on a fake
clock. The same, with real processes and PostgreSQL, is tests/integration/test_k8s_sim.py."""
from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from coffee_team import liveness, restarts, status
from coffee_team.cli import main
from coffee_team.errors import TeamError
from coffee_team.proctable import started_of
from coffee_team.queue import MessageQueue
from coffee_team.team import load_team
from coffee_team.team.parse import database_override
from coffee_team.watchdog import policy
from tests.clock import FakeClock

TEAM = """team:
  database_path: data/q.db
  heartbeat_interval: 10
  heartbeat_stale_after: 30
agents:
  a: {priority: 1}
  b: {priority: 1}
  c: {priority: 2}
"""


@pytest.fixture
def team_file(tmp_path, monkeypatch):
    monkeypatch.delenv("COFFEE_DATABASE_URL", raising=False)
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir()
    path.write_text(TEAM)
    return path


def cli(team_file, *args):
    return CliRunner().invoke(main, ["--team", str(team_file), *args], catch_exceptions=False)


# --- COFFEE_DATABASE_URL ----------------------------------------------------------------------

def test_the_database_url_from_the_environment_wins_over_the_team_file(team_file, monkeypatch):
    assert load_team(team_file).database_url == str(team_file.parent / "q.db")
    monkeypatch.setenv("COFFEE_DATABASE_URL", "postgresql://u:secret@db/team")
    team = load_team(team_file)
    assert team.database_url == "postgresql://u:secret@db/team" and team.is_postgres


def test_a_bad_database_url_is_one_line_without_the_password(team_file):
    team = load_team(team_file)
    with pytest.raises(TeamError) as caught:
        database_override(team, {"COFFEE_DATABASE_URL": "postgresql://u:secret@db"})
    assert "COFFEE_DATABASE_URL" in str(caught.value) and "secret" not in str(caught.value)
    assert database_override(team, {"COFFEE_DATABASE_URL": ""}) is team


# --- the rules --------------------------------------------------------------------------------

def test_one_module_owns_the_heartbeat_rule():
    assert policy.heartbeat_status is liveness.heartbeat_status
    assert [liveness.heartbeat_status(t, 100.0, 30) for t in (None, 70, 69, 40, 39)] == [
        "missing", "fresh", "stale", "stale", "hung"]


def row(**kw):
    base = {"agent": "a", "host": "pod-a", "pid": 7, "proc_start": 1.0, "started_at": 0.0,
            "heartbeat": 100.0, "ready": True, "state": "idle", "task_id": None,
            "task_type": None, "task_started_at": None, "waiting_for": None, "restarts": 0}
    return {**base, **kw}


@pytest.mark.parametrize("kind, the_row, here, now, passes", [
    # liveness: only hung fails; a long task beats; nothing started here is no restart
    ("live", row(), True, 160.0, True),
    ("live", row(), True, 160.1, False),
    ("live", row(state="working", task_id=3), True, 130.0, True),
    ("live", row(heartbeat=None), True, 1e6, True),
    ("live", None, False, 0.0, True),
    ("live", row(), False, 1e6, True),
    # startup: this process wrote its first heartbeat, ready or not (docs/kubernetes.md)
    ("started", row(), True, 100.0, True),
    ("started", row(ready=False, waiting_for="database"), True, 100.0, True),
    ("started", row(heartbeat=None), True, 100.0, False),
    ("started", row(), False, 100.0, False),
    ("started", None, False, 100.0, False),
    # readiness: ready to claim, heartbeat fresh
    ("ready", row(), True, 130.0, True),
    ("ready", row(), True, 130.1, False),
    ("ready", row(ready=False, state="starting"), True, 100.0, False),
    ("ready", row(), False, 100.0, False),
])
def test_probe_verdicts(kind, the_row, here, now, passes):
    assert liveness.probe_verdict(kind, the_row, here, now, 30.0)[0] is passes


def test_ready_to_claim_and_gone():
    assert liveness.ready_to_claim("idle", None) and liveness.ready_to_claim("working", None)
    assert not liveness.ready_to_claim("idle", "database")
    assert not any(liveness.ready_to_claim(s, None) for s in ("starting", "stopping", "stopped"))
    assert liveness.instance_gone(None, 0.0, 30) and liveness.instance_gone(
        row(state="stopped"), 100.0, 30)
    assert not liveness.instance_gone(row(), 160.0, 30)
    assert liveness.instance_gone(row(), 160.1, 30)
    assert not liveness.instance_gone(row(heartbeat=None, started_at=90.0), 100.0, 30)


def test_a_group_waits_for_every_earlier_priority():
    priorities = {"a": 1, "b": 1, "c": 2, "d": 3}
    assert restarts.waiting_before(priorities, 2, set()) == ["a", "b"]
    assert restarts.waiting_before(priorities, 3, {"a", "b"}) == ["c"]
    assert restarts.waiting_before(priorities, 1, set()) == []


def test_status_from_instances(team_file):
    team = load_team(team_file)
    data = status.from_instances(team, {"a": row(host="pod-a", state="working", task_id=4,
                                                 task_type="t", restarts=2),
                                        "b": row(agent="b", heartbeat=10.0)}, now=110.0)
    a, b, c = data["agents"]
    assert (a["state"], a["host"], a["restarts"], a["current_task"]) == (
        "RUNNING", "pod-a", 2, {"id": 4, "type": "t", "started_at": 110.0})
    assert a["activity"] == "working on #4 for 0m 0s"
    assert (b["state"], c["state"], data["agents_running"]) == ("STOPPED", "UNKNOWN", 1)


# --- the CLI on a SQLite file: one host's team, whose agents write heartbeat files, no rows ---

def heartbeat(team, name="a", pid=None, started_at=None, beat=None, state="idle",
              waiting_for=None):
    import time
    from coffee_team.heartbeat import write_heartbeat
    now = time.time()
    status = {"agent": name, "pid": os.getpid() if pid is None else pid, "state": state,
              "last_heartbeat": now if beat is None else beat, "waiting_for": waiting_for,
              "current_task": None}
    if started_at is not False:
        status["started_at"] = now if started_at is None else started_at
    team.status_dir.mkdir(parents=True, exist_ok=True)
    write_heartbeat(team.status_dir, name, status)


def test_probes_read_this_process_heartbeat_file(team_file):
    import time
    team = load_team(team_file)
    assert cli(team_file, "agent", "probe", "a").exit_code == 0  # nothing to judge yet
    assert cli(team_file, "agent", "probe", "a", "--started").exit_code == 1
    heartbeat(team, started_at=False, state="starting", waiting_for="database")  # starting
    assert cli(team_file, "agent", "probe", "a", "--started").exit_code == 1
    assert cli(team_file, "agent", "probe", "a").exit_code == 0
    heartbeat(team)
    for kind in ((), ("--started",), ("--ready",)):
        result = cli(team_file, "agent", "probe", "a", *kind)
        assert result.exit_code == 0, result.output
    heartbeat(team, waiting_for="database")  # alive, not ready
    assert cli(team_file, "agent", "probe", "a", "--ready").exit_code == 1
    assert cli(team_file, "agent", "probe", "a").exit_code == 0
    heartbeat(team, beat=time.time() - 61, state="working")
    result = cli(team_file, "agent", "probe", "a")
    assert result.exit_code == 1 and "hung" in result.output
    assert cli(team_file, "agent", "probe", "a", "--ready").exit_code == 1
    # the file of a process that is not running (a container before this one): not started
    heartbeat(team, started_at=started_of(os.getpid()) - 5)
    assert cli(team_file, "agent", "probe", "a", "--started").exit_code == 1
    assert cli(team_file, "agent", "probe", "a").exit_code == 0
    heartbeat(team, pid=2 ** 22 + 1)
    assert cli(team_file, "agent", "probe", "a", "--started").exit_code == 1


def test_an_unknown_agent_is_one_line(team_file):
    result = cli(team_file, "agent", "probe", "nobody")
    assert result.exit_code == 2 and "unknown agent" in result.output


def test_wait_ready_says_what_it_waits_for_and_times_out(team_file):
    team = load_team(team_file)
    with MessageQueue.from_team(team) as queue:
        queue.instance_started("a", "elsewhere", os.getpid(), 1.0)  # no SQLite agent writes it
        result = cli(team_file, "agent", "wait-ready", "--before", "2", "--timeout", "0")
        assert result.exit_code == 1
        assert "waiting for a, b (priority < 2)" in result.output and "timed out" in result.output
        heartbeat(team, "a", state="starting", started_at=False, waiting_for="database")
        result = cli(team_file, "agent", "wait-ready", "--before", "2", "--timeout", "0")
        assert result.exit_code == 1 and "waiting for a, b" in result.output
        for name in ("a", "b"):
            heartbeat(team, name)
        result = cli(team_file, "agent", "wait-ready", "--before", "2", "--timeout", "0")
        assert result.exit_code == 0 and "ready" in result.output
        assert cli(team_file, "agent", "wait-ready", "--before", "1").exit_code == 0


def test_status_k8s_marks_a_hung_heartbeat(team_file):
    import time
    team = load_team(team_file)
    MessageQueue.from_team(team).close()
    heartbeat(team, "a", beat=time.time() - 100)
    heartbeat(team, "b", state="working")
    result = cli(team_file, "status", "--k8s")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["AGENT", "POD", "PID", "STATE", "READY", "HEARTBEAT", "TASK",
                                "RESTARTS"]
    assert "HUNG" in lines[1] and socket.gethostname() in lines[1]
    assert "HUNG" not in lines[2] and "never started" in lines[3]
    assert lines[2].split()[3:5] == ["working", "yes"]


# --- the control plane ------------------------------------------------------------------------

def test_the_control_plane_requeues_only_a_gone_agents_work(team_file):
    from coffee_team.controlplane.duties import ControlPlane
    team = load_team(team_file)
    clock = FakeClock()
    logged = []
    with MessageQueue.from_team(team, clock=clock) as queue:
        plane = ControlPlane(team, queue, logged.append, clock=clock, mono=clock.monotonic)
        for name in ("a", "b", "c"):
            queue.send("cli", name, "t")
            queue.claim(name)
        # on SQLite (one host) the agent's heartbeat file, as its row would on PostgreSQL
        heartbeat(team, "a", pid=7, beat=clock.now, state="working")
        heartbeat(team, "b", pid=8, beat=clock.now, state="stopped")  # a clean stop
        assert plane.reap() == 2  # b stopped, c never wrote a heartbeat: nobody holds them
        clock.advance(60)  # stale, not hung: a long task is never taken away
        assert plane.reap() == 0
        clock.advance(0.5)
        assert plane.reap() == 1 and queue.stats()["a"]["pending"] == 1
        assert "requeued 1 task(s) of a" in logged[-1]
        assert [e for e in queue.events(since_id=0) if e["kind"] == "requeued"][-1][
            "detail"]["by"] == "control-plane"
        plane.run(lambda timeout: True)  # one round of every duty, then stop
        assert plane.health(30.0)[0]
        clock.advance(31)
        assert plane.health(30.0) == (False, "control plane loop silent for 31s")


def test_the_control_plane_port_answers_healthz(team_file):
    from coffee_team.controlplane.http import make_server
    team = load_team(team_file)
    healthy = [True]
    server, close = make_server(team, lambda: None,
                                lambda within: (healthy[0], "ok" if healthy[0] else "silent"),
                                "127.0.0.1", 0, None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert urllib.request.urlopen(url + "/healthz", timeout=5).read() == b"ok\n"
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url + "/healthz", timeout=5)
        assert caught.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url + "/", timeout=5)
        assert caught.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        close()
        thread.join()


def test_the_agent_writes_its_row_once_per_interval_unless_its_readiness_changes():
    from types import SimpleNamespace
    from coffee_team.agent.instance import InstanceRow
    clock = FakeClock()
    writes = []

    class Queue:
        def instance_beat(self, *args, **kw):
            writes.append((kw["state"], kw["ready"], kw["task_id"]))
            return True

    agent = SimpleNamespace(name="a", team=SimpleNamespace(
        host="pod-a", settings=SimpleNamespace(heartbeat_interval=10.0)),
        db_errors=(), queue=Queue())
    row = InstanceRow(agent)
    row.mono = clock.monotonic

    def beat(state, task=None, waiting_for=None):
        return row.beat({"state": state, "last_heartbeat": clock.now, "waiting_for": waiting_for,
                         "current_task": task and {"id": task, "type": "t", "started_at": 1.0}})

    assert beat("idle") and beat("working", 1) and beat("idle")  # tasks: no write each
    assert writes == [("idle", True, None)]
    clock.advance(10)
    assert beat("working", 2) and writes[-1] == ("working", True, 2)
    assert beat("idle", waiting_for="database") and writes[-1] == ("idle", False, None)
    assert beat("stopping") and writes[-1] == ("stopping", False, None)
    assert len(writes) == 4
