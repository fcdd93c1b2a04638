"""memory_limit_mb under a real supervisord (issue #26, finding 7): a handler that keeps
allocating is stopped by its own agent before the agent's process tree passes 1.5 × the
limit, with the watchdog's health check an hour away, and the task says why.

Before: only the watchdog's check (every health_check_interval, two over-limit readings in a
row) stopped it; the tree reached about twice the limit meanwhile, and the task failed as
"exited with -15" or was requeued, never naming memory. Then the agent's sampler alone: the
Python handler, allocating on the agent's own main thread, was once stopped at 444 MB (CI);
now the kernel refuses its allocation at the cap (RLIMIT_DATA, agent/memguard.py), which
the test says when it was that and not the sampler.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, wait_until

pytestmark = pytest.mark.slow

LIMIT = 200
CLI = str(Path(__file__).resolve().parents[1] / "allocating_cli.py")
REASON = re.compile(rf"^memory limit {LIMIT} MB exceeded: (\d+) MB$")


def team(project):
    watch = {"memory_limit_mb": LIMIT, "rss_warn_mb": 100_000, "check_interval": 3600}
    project.write_team({
        "cmd": {"priority": 1, "command": [sys.executable, CLI, "8"], **watch},
        "py": {"priority": 1, "handler": "coffee_team.agent.faults:allocate",
               "options": {"chunk_mb": 8}, **watch},
    }, health_check_interval=3600)  # the watchdog never looks: the agent alone must do it


def finished(project, task_id):
    with MessageQueue.from_team(project.team) as q:
        row = q.get_task(task_id)
    return row if row["status"] in ("completed", "failed") else None


@pytest.mark.parametrize("agent", ["cmd", "py"])
def test_a_handler_allocating_past_its_limit_is_stopped_below_one_and_a_half_times_it(
        project, agent, reliability):
    team(project)
    boot_supervisord(project)
    infos = project.wait_states("RUNNING", timeout=40)
    with MessageQueue.from_team(project.team) as q:
        grow = q.send("cli", agent, "grow")
    row = wait_until(lambda: finished(project, grow), 30, 0.1, "the growing task to end")
    assert row["status"] == "failed", row
    match = REASON.match(row["error"])
    assert match, row["error"]
    reached = int(match.group(1))
    log = (project.team.log_dir / f"{agent}.log").read_text()
    allocated = [int(n) for n in re.findall(r"allocated (\d+) MB", log)]
    by = "the sampler" if f"{row['error']}; stopping its handler" in log else "the cap"
    print(f"{agent}: stopped at {reached} MB (limit {LIMIT}) by {by}; "
          f"the handler had allocated {allocated[-1] if allocated else '?'} MB")
    assert LIMIT < reached < 1.5 * LIMIT
    if agent == "cmd":  # the command's own count: it was stopped within a chunk of that
        assert allocated and allocated[-1] < 1.5 * LIMIT
    with MessageQueue.from_team(project.team) as q:
        events = [e for e in q.events(agent=agent, limit=100) if e["kind"] == "memory_limit"]
        assert [e["detail"]["task_id"] for e in events] == [grow]
        after = q.send("cli", agent, "small")
    done = wait_until(lambda: finished(project, after), 20, 0.1, "the next task")
    kind = "command" if agent == "cmd" else "Python handler"
    reliability(f"{kind} allocating past memory_limit_mb", "2 tasks (grow, then a small one)",
                f"8 MB chunks without end; memory_limit_mb {LIMIT}, health_check_interval "
                f"3600", 0 if done["status"] == "completed" else 1, "0",
                f"stopped at {reached} MB of the agent's tree (< {1.5 * LIMIT:g}): failed "
                f"\"{row['error']}\"; same PID, next task done")
    assert done["status"] == "completed"  # the agent carries on
    assert project.infos()[agent]["pid"] == infos[agent]["pid"]  # not restarted
