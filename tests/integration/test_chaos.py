"""Chaos under load: 10,000 tasks while a killer SIGKILLs a random agent every ~0.5 s and now
and then freezes another with SIGSTOP/SIGCONT. Nothing may be lost or completed twice."""
from __future__ import annotations

import collections
import os
import random
import signal
import time

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord

pytestmark = pytest.mark.slow

WORKERS = ("w0", "w1", "w2", "w3")
TASKS = 10_000


def chaos_team(project, tmp_path):
    agents = {name: {"priority": 1 + i % 2, "check_interval": 86400,
                     "handler": "coffee_team.agent.faults:relay",
                     "options": {"record_file": str(tmp_path / f"{name}.effects"),
                                 "work_seconds": 0.002}}
              for i, name in enumerate(WORKERS)}
    project.write_team(agents, restart_backoff=0.25, restart_backoff_max=1.0,
                       restart_reset_after=1, max_restart_attempts=1000,
                       max_queue_size=50_000)


def running_pids(rpc) -> dict[str, int]:
    return {i["name"]: i["pid"] for i in rpc.supervisor.getAllProcessInfo()
            if i["name"] in WORKERS and i["statename"] == "RUNNING" and i["pid"]}


def test_chaos_kills_under_load_lose_nothing(project, tmp_path, reliability):
    chaos_team(project, tmp_path)
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    rng = random.Random(7)
    rpc = project.rpc()
    kills: list[tuple[float, str]] = []
    freezes = 0
    with MessageQueue.from_team(project.team) as q:
        t0 = time.time()
        ids = []
        for start in range(0, TASKS, 1000):
            ids += q.send_many([{"sender": "chaos", "recipient": WORKERS[i % 4], "type": "work",
                                 "content": {"i": i}} for i in range(start, start + 1000)])

        def all_work_done() -> bool:
            stats = q.stats()
            return all(stats[w]["pending"] == 0 and stats[w]["in_progress"] == 0 for w in WORKERS) \
                and sum(stats[w]["completed"] for w in WORKERS) >= 2 * TASKS

        deadline = time.time() + 400
        while not all_work_done():
            assert time.time() < deadline, f"chaos run did not finish: {q.stats()}"
            time.sleep(0.5)
            pids = running_pids(rpc)
            if not pids:
                continue
            victim = rng.choice(sorted(pids))
            os.kill(pids[victim], signal.SIGKILL)
            kills.append((time.time(), victim))
            others = sorted(set(pids) - {victim})
            if others and rng.random() < 0.2:
                frozen = pids[rng.choice(others)]
                os.kill(frozen, signal.SIGSTOP)
                time.sleep(0.3)
                os.kill(frozen, signal.SIGCONT)
                freezes += 1
        elapsed = time.time() - t0

        # every crash gets its restart before we count
        project.wait_states("RUNNING", timeout=30, interval=0.2)  # all agents back
        tasks = q.list_tasks(limit=10 * TASKS)
        events = q.events(limit=10**6)

    work = {t["id"]: t for t in tasks if t["type"] == "work"}
    acks = collections.Counter(t["content"]["source"] for t in tasks if t["type"] == "ack")
    assert set(work) == set(ids)
    assert all(t["status"] == "completed" for t in tasks), \
        collections.Counter(t["status"] for t in tasks)
    # exactly once: each work task produced exactly one follow-up, sent with its completion
    assert set(acks) == set(ids) and max(acks.values()) == 1
    effects = collections.Counter()
    for name in WORKERS:
        effects.update(int(x) for x in (tmp_path / f"{name}.effects").read_text().split())
    assert set(effects) == set(ids)
    repeated = sum(n - 1 for n in effects.values())
    # an outside effect repeats only for a task cut off by a kill: at most one per kill
    assert repeated <= len(kills)

    crashes = [e for e in events if e["kind"] == "crash" and e["agent"] in WORKERS]
    restarts = [e for e in events if e["kind"] == "restarted" and e["agent"] in WORKERS]
    assert len(crashes) == len(kills), (len(crashes), len(kills))
    assert len(restarts) == len(kills)
    assert not [e for e in events if e["kind"] == "given_up"]

    # how long a killed agent's tasks stayed stuck: kill -9 → requeued (claimable again)
    stuck = []
    for killed_at, agent in kills:
        requeued = [e["ts"] for e in events if e["kind"] == "requeued" and e["agent"] == agent
                    and e["ts"] >= killed_at]
        if requeued:
            stuck.append(min(requeued) - killed_at)
    lost = len(set(ids) - {i for i, t in work.items() if t["status"] == "completed"})
    reliability("chaos under load", f"{TASKS} tasks + {TASKS} follow-ups, 4 agents, "
                f"{2 * TASKS / elapsed:.0f} tasks/s", f"{len(kills)} × SIGKILL, "
                f"{freezes} × SIGSTOP/SIGCONT", lost,
                f"0 completions, 0 follow-ups; {repeated} outside effects re-run",
                f"killed agent's task claimable again ≤ {max(stuck, default=0):.2f}s; "
                f"{len(restarts)}/{len(kills)} restarts")
    print(f"\nchaos: {TASKS} tasks (+{TASKS} follow-ups) in {elapsed:.1f}s = "
          f"{2 * TASKS / elapsed:.0f} tasks/s; kills {len(kills)}, freezes {freezes}, "
          f"restarts {len(restarts)}; lost 0, completed twice 0, outside effects repeated "
          f"{repeated}; kill -9 → task claimable again: max {max(stuck, default=0):.2f}s "
          f"over {len(stuck)} interrupted tasks")
