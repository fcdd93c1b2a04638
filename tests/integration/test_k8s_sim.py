"""The team on a simulated Kubernetes (tests/k8s_sim.py runs what ``coffee-team gen-k8s``
rendered as local processes, as a kubelet would) on PostgreSQL: a pod killed by ``kill -9``
exits, the control plane requeues its task, the restarted pod takes it and the task
completes exactly once; the second priority group's init container holds its agent until
the first group is ready; a frozen agent fails its liveness probe and is restarted.
Needs COFFEE_TEST_PG_URL and root (each pod's own host name: unshare --uts)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests import k8s_sim
from tests.integration.test_pg_scaleout import needs_pg, temporary_database

pytestmark = [pytest.mark.slow, needs_pg]
COFFEE = str(Path(sys.executable).parent / "coffee-team")

HANDLER = """\
import json, sys, time
task = json.load(sys.stdin)
with open(sys.argv[1], "a") as log:
    log.write(f"start {task['id']}\\n")
time.sleep(float((task.get("content") or {}).get("seconds", 0)))
with open(sys.argv[1], "a") as log:
    log.write(f"done {task['id']}\\n")
print(json.dumps({"ok": task["id"]}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pg_db():
    """A database of this test's own (test_pg_scaleout's is the module's): (url, name)."""
    with temporary_database("coffee_k8s_") as made:
        yield made


@pytest.fixture
def cluster(tmp_path, pg_db):
    why = k8s_sim.available()
    if why:
        pytest.skip(why)
    url, _ = pg_db
    runs = tmp_path / "runs.log"
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    team = {
        "team": {"database_path": url, "heartbeat_interval": 1, "heartbeat_stale_after": 6,
                 "lease_seconds": 60, "health_check_interval": 5, "stop_wait_seconds": 1},
        "agents": {
            "worker": {"priority": 1, "check_interval": 3600,
                       "command": [sys.executable, str(handler), str(runs)]},
            "second": {"priority": 2, "check_interval": 3600},
        }}
    team_file = tmp_path / "project" / "data" / "team.yaml"
    team_file.parent.mkdir(parents=True)
    team_file.write_text(json.dumps(team))  # JSON is YAML
    out = tmp_path / "manifests"
    env = {k: v for k, v in os.environ.items() if k != "COFFEE_DATABASE_URL"}
    subprocess.run([COFFEE, "--team", str(team_file), "gen-k8s", "--out", str(out)],
                   check=True, env=env, capture_output=True)
    port = free_port()
    sim = k8s_sim.Cluster(k8s_sim.load_manifests(out), tmp_path / "pods",
                          {"COFFEE_DATABASE_URL": url}, programs={"coffee-team": COFFEE},
                          ports={8080: port}, env_overrides={"COFFEE_CONTROL_PLANE_PORT":
                                                             str(port)},
                          backoff=3.0, backoff_max=6.0)
    with sim:
        yield sim, url, runs
    for pod in sim.pods.values():  # every process it started is gone
        for container in pod.inits + pod.containers:
            assert container.proc is None or container.proc.poll() is not None


def queue_of(url):
    from coffee_team.queue import MessageQueue
    return MessageQueue(url, agents=("worker", "second"))


def test_a_killed_pods_task_is_requeued_by_the_control_plane_and_done_once(cluster):
    sim, url, runs = cluster
    assert set(sim.pods) == {"worker-0", "second-0", "coffee-control-plane-sim"}
    sim.wait_for(lambda: sim.pods["worker-0"].ready, 60, "worker-0 ready")
    sim.wait_for(lambda: sim.pods["second-0"].ready, 60, "second-0 ready")
    sim.wait_for(lambda: sim.pods["coffee-control-plane-sim"].ready, 60, "control plane ready")
    # the init container held group 2 until group 1 was ready (its instance's first
    # heartbeat, as the database says), and said what it waited for
    second_started = next(t for t, pod, c, what in sim.events
                          if pod == "second-0" and c == "agent" and what.startswith("started"))
    with queue_of(url) as q:
        worker_since = q.instance("worker")["started_at"]
    assert second_started > worker_since
    init_log = (sim.pods["second-0"].root / "wait-ready.log").read_text()
    assert init_log.index("waiting for worker (priority < 2)") < \
        init_log.index("ready: every agent with priority < 2")

    with queue_of(url) as q:
        task_id = q.send("cli", "worker", "job", {"seconds": 3})
        sim.wait_for(lambda: runs.exists() and f"start {task_id}" in runs.read_text(), 30,
                     "the task to start")
        sim.kill_pod("worker-0")
        requeued = sim.wait_for(
            lambda: [e for e in q.events(since_id=0) if e["kind"] == "requeued"
                     and e["agent"] == "worker"], 20, "the control plane's requeue")
        assert requeued[0]["detail"] == {"count": 1, "by": "control-plane"}
        assert q.get_task(task_id)["status"] in ("pending", "in_progress")
        sim.wait_for(lambda: q.get_task(task_id)["status"] == "completed", 60,
                     "the task to complete after the restart")
        lines = runs.read_text().split()
        assert lines.count(str(task_id)) == 3  # started twice, done once
        assert runs.read_text().count(f"done {task_id}") == 1
        row = sim.wait_for(lambda: (r := q.instance("worker"))["state"] == "idle" and r, 10,
                           "the worker's row to show it idle")
        assert (row["host"], row["restarts"], row["task_id"]) == ("worker-0", 1, None)
    # status --k8s shows it
    env = {**os.environ, "COFFEE_DATABASE_URL": url}
    team_file = sim.pods["worker-0"].mounts["/srv/coffee/data/team.yaml"]
    shown = subprocess.run([COFFEE, "--team", str(team_file), "status", "--k8s", "--json"],
                           env=env, capture_output=True, text=True, check=True)
    agents = {a["name"]: a for a in json.loads(shown.stdout)["agents"]}
    assert (agents["worker"]["pod"], agents["worker"]["restarts"]) == ("worker-0", 1)
    assert agents["second"]["pod"] == "second-0" and agents["second"]["ready"]


def test_a_frozen_agent_fails_its_liveness_probe_and_is_restarted(cluster):
    sim, url, runs = cluster
    sim.wait_for(lambda: sim.pods["worker-0"].ready, 60, "worker-0 ready")
    agent = sim.pods["worker-0"].containers[0]
    pid = agent.proc.pid
    os.kill(pid, signal.SIGSTOP)  # hung: no heartbeat (stale after 6 s, hung after 12 s)
    try:
        sim.wait_for(lambda: sim.first("worker-0", "livenessProbe failed"), 40,
                     "the liveness probe to fail")
        # SIGTERM does nothing to it: SIGKILL after the grace period, then the restart
        sim.wait_for(lambda: agent.restarts == 1 and sim.pods["worker-0"].ready, 60,
                     "the restarted worker to be ready")
        assert agent.proc.pid != pid
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass
    with queue_of(url) as q:
        assert q.instance("worker")["restarts"] == 1, "\n".join(map(str, sim.events))
