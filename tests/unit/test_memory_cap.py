"""The memory cap of a Python handler for real (agent/memguard.py): RLIMIT_DATA lowered in
this very process while a real Agent runs coffee_team.agent.faults:allocate, its heartbeat
and lease threads (Pulse) running meanwhile. The handler keeps allocating small objects
after its first refusal, so the process sits at the cap and the agent's own threads may be
refused too (in about half the runs: the count is printed): they must carry on, and the
agent must take its next task. The reason names the peak: under the cap, Python sometimes
cannot allocate the traceback and frees the handler's memory before the agent sees the
MemoryError (the RSS read then said 57 MB in 1 run of 5). No process is started; the
sampler thread is not either (a reading over the limit would stop the handler first:
test_memguard.py and the live test cover it)."""
from __future__ import annotations

import math
import os
import re
import resource
import sys
import time

import pytest

from coffee_team.agent import faults
from coffee_team.agent.memguard import MemoryGuard
from coffee_team.agent.pulse import Pulse
from coffee_team.agent.runtime import Agent
from coffee_team.handlers import CallableRunner
from coffee_team.proctable import rss_of
from coffee_team.queue import MessageQueue
from tests.harness import Project

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_DATA counts mmap on Linux (4.7 on)")

HOLD_S = 1.5  # the handler's seconds at the cap: several looks of each thread (0.1 s apart)


def test_a_python_handler_is_refused_at_the_cap_and_the_agents_threads_carry_on(tmp_path):
    limit = math.ceil(rss_of([os.getpid()]) / 2**20) + 40
    project = Project(tmp_path)
    project.write_team({"ann": {"handler": "coffee_team.agent.faults:allocate",
                                "memory_limit_mb": limit,
                                "options": {"chunk_mb": 0.0004, "keep_trying_s": HOLD_S}}},
                       heartbeat_interval=0.1)
    queue = MessageQueue.from_team(project.team)
    agent = Agent(project.team, "ann", queue=queue)
    agent.runner = CallableRunner(faults.allocate)
    agent.memory_guard = MemoryGuard(agent, limit)  # its sampler thread is not started
    pulse = agent.pulse = Pulse(agent, heartbeat_interval=0.1, lease_seconds=queue.lease_seconds,
                                loop_limit=30, stall_after=None, on_stall="warn")
    refused: list[str] = []
    for name in ("work_check", "beat_check"):  # count the refusals the threads take
        def spy(now, real=getattr(pulse, name), name=name):
            try:
                real(now)
            except MemoryError:
                refused.append(name)
                raise
        setattr(pulse, name, spy)
    before = resource.getrlimit(resource.RLIMIT_DATA)
    pulse.start()
    try:
        grow = queue.send("cli", "ann", "grow")
        agent.process(queue.claim("ann")[0])
        after = resource.getrlimit(resource.RLIMIT_DATA)
        time.sleep(0.3)  # a few more looks of each thread, with the cap lifted
        assert pulse.is_alive() and pulse.beats.is_alive(), refused
        small = queue.send("cli", "ann", "small")
        agent.process(queue.claim("ann")[0])
    finally:
        pulse.stop()
        queue.close()
    with MessageQueue.from_team(project.team) as q:
        rows = {t["id"]: t for t in q.list_tasks(limit=5)}
        events = [e for e in q.events(agent="ann") if e["kind"] == "memory_limit"]
    print(f"limit {limit} MB: {rows[grow]['error']}; refused on the threads: {len(refused)} "
          f"({', '.join(sorted(set(refused))) or 'none'})")
    assert after == before  # lifted when the task ended
    reached = re.fullmatch(rf"memory limit {limit} MB exceeded: (\d+) MB", rows[grow]["error"])
    assert rows[grow]["status"] == "failed" and reached, rows[grow]
    assert limit < int(reached.group(1)) < 1.5 * limit
    assert [e["detail"]["task_id"] for e in events] == [grow]
    assert rows[small]["status"] == "completed"
