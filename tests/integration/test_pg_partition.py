"""A PostgreSQL partition under a real supervisord (issue 26, item 3): the team reaches the
database through a TCP proxy the test cuts (tests/tcpproxy.py) for longer than the heartbeat
may be silent. No healthy agent is restarted as hung, a killed agent is restarted within
seconds while the database is away, nothing counts toward give-up, and every task sent is
done exactly once after the heal. Then the proxy makes every answer of the server late (a
slow disk under it): still no hang.

Needs COFFEE_TEST_PG_URL, like test_pg_scaleout.py (whose temporary-database fixture this
module shares).
"""
from __future__ import annotations

import os
import signal
from collections import Counter
import time
from urllib.parse import urlsplit

import pytest

from coffee_team.heartbeat import read_heartbeat
from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, demo_agents, wait_until
from tests.integration.test_pg_scaleout import needs_pg, pg_db  # noqa: F401 (a fixture)
from tests.tcpproxy import TcpProxy

pytestmark = [needs_pg, pytest.mark.slow]

# seconds: over twice 2 x heartbeat_stale_after (3 s: hung after 6 s), and long enough that
# the agent killed 2 s in is RUNNING again (~4 s later; at most 10) before the heal
PARTITION = 14.0
WORKER = "code_developer"
KILLED = "architect"
SLOW = 3.5  # seconds each answer of the server is held in the slow phase


@pytest.fixture
def proxied(project, pg_db, tmp_path):  # noqa: F811
    url, _ = pg_db
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    agents = demo_agents()
    agents[WORKER].update(handler="coffee_team.agent.faults:record",
                          options={"record_file": str(tmp_path / "done"), "work_seconds": 0.1})
    project.write_team(agents, database_path=proxy.url(url))
    direct = MessageQueue(url, **project.team.queue_options())  # around the proxy
    try:
        boot_supervisord(project)
        project.wait_states("RUNNING", timeout=60)
        yield project, proxy, direct, tmp_path / "done"
    except BaseException:
        raise
    finally:
        if os.environ.get("COFFEE_TEST_DUMP_LOGS"):
            for log in sorted((project.root / "data" / "logs").glob("*.log")):
                print(f"===== {log.name}\n" + "\n".join(log.read_text().splitlines()[-25:]))
        proxy.close()
        direct.close()


def send(queue, n):
    return [queue.send("cli", WORKER, "work", {"n": i}) for i in range(n)]


def all_done(queue, ids):
    return all(queue.get_task(i)["status"] == "completed" for i in ids)


def beats(project):
    return {name: read_heartbeat(project.team.status_dir, name) for name in project.team.names}


def test_a_partition_restarts_no_healthy_agent_and_the_killed_one_at_once(proxied, reliability):
    project, proxy, direct, record = proxied
    stale_after = project.team.settings.heartbeat_stale_after
    first = send(direct, 5)
    wait_until(lambda: all_done(direct, first), 60, 0.2, "the first tasks")
    pids = {n: i["pid"] for n, i in project.infos().items() if n in project.team.names}

    proxy.partition()
    cut_at = time.monotonic()
    during = send(direct, 10)  # straight to the server: the team cannot see them yet
    time.sleep(2)
    os.kill(pids[KILLED], signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(
        lambda: (lambda i: i["statename"] == "RUNNING" and i["pid"] != pids[KILLED])(
            project.infos()[KILLED]), 30, 0.05, "the killed agent to be restarted")
    restart_took = time.monotonic() - killed_at
    assert time.monotonic() - cut_at < PARTITION - 1, "restarted too late: not during the partition"
    oldest, waiting = 0.0, set()
    while time.monotonic() - cut_at < PARTITION:
        now = time.time()
        for name, beat in beats(project).items():
            if name == KILLED or not beat.get("last_heartbeat"):
                continue
            oldest = max(oldest, now - beat["last_heartbeat"])
            if beat.get("waiting_for") == "database":
                waiting.add(name)
        infos = project.infos()
        assert {n: infos[n]["pid"] for n in pids if n != KILLED} == \
            {n: p for n, p in pids.items() if n != KILLED}, "a healthy agent was restarted"
        time.sleep(0.5)
    proxy.heal()
    healed_at = time.monotonic()

    wait_until(lambda: all_done(direct, during), 90, 0.2, "the tasks sent during the partition")
    done_after = time.monotonic() - healed_at
    runs = Counter(record.read_text().split())  # the demo team sends code_developer some too
    assert all(runs[str(i)] == 1 for i in first + during), runs  # each exactly once
    assert max(runs.values()) == 1, runs
    infos = project.infos()
    assert all(infos[n]["pid"] == p for n, p in pids.items() if n != KILLED)
    assert oldest < stale_after, f"a heartbeat {oldest:.1f}s old during the partition"
    assert waiting, "no heartbeat said it waits for the database"

    def written():  # the watchdog's writes of the partition, once the database answers
        kinds = {e["kind"] for e in direct.events(agent=KILLED, limit=1000)}
        return {"crash", "restarted"} <= kinds
    wait_until(written, 30, 0.2, "the watchdog's restart to be written")
    events = direct.events(limit=10000)
    assert not [e for e in events if e["kind"] in ("hung", "given_up")]
    states = direct.restart_states(sorted(project.team.names))
    assert states[KILLED]["attempts"] == 1  # the kill, and nothing else
    assert all(states[n]["attempts"] == 0 and not states[n]["given_up"]
               for n in project.team.names if n != KILLED)
    assert restart_took < 10, restart_took

    # A server whose every answer is late, each longer than heartbeat_stale_after (a disk
    # that commits at SLOW s): slow, never hung.
    proxy.delay = SLOW
    slow = send(direct, 1)
    started = time.monotonic()
    slow_oldest = 0.0
    while not all_done(direct, slow):
        assert time.monotonic() - started < 180, "the task on a slow server"
        now = time.time()
        slow_oldest = max([slow_oldest] + [now - b["last_heartbeat"] for b in
                                           beats(project).values() if b.get("last_heartbeat")])
        time.sleep(0.5)
    slow_took = time.monotonic() - started
    proxy.delay = 0.0
    assert slow_oldest < stale_after, f"a heartbeat {slow_oldest:.1f}s old on a slow server"
    infos = project.infos()
    assert all(infos[n]["pid"] == p for n, p in pids.items() if n != KILLED)
    assert not [e for e in direct.events(limit=10000) if e["kind"] in ("hung", "given_up")]
    print(f"restart after kill -9 {restart_took:.1f}s; oldest heartbeat {oldest:.1f}s; "
          f"{len(during)} tasks done {done_after:.1f}s after heal; slow server: 1 task in "
          f"{slow_took:.1f}s, oldest heartbeat {slow_oldest:.1f}s")
    reliability("PostgreSQL partition (TCP proxy holding every byte)",
                f"{len(first) + len(during)} tasks, 6 agents",
                f"partition {PARTITION:.0f} s (> 2 x heartbeat_stale_after); kill -9 of an "
                f"idle agent 2 s in; then every answer {SLOW:g} s late", 0, "0",
                f"killed agent restarted {restart_took:.1f}s after the kill, during the "
                f"partition; no healthy agent restarted, 0 hung, 0 given up, oldest heartbeat "
                f"{oldest:.1f}s (stale at {stale_after:g}s); tasks done {done_after:.1f}s "
                f"after the heal; slow server: its task in {slow_took:.1f}s, oldest heartbeat "
                f"{slow_oldest:.1f}s, no restart")
