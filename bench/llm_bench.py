"""LLM agent overhead: one task through an llm agent vs spawning the same fake CLI directly.

    python bench/llm_bench.py [--tasks 60] [--json bench/results/llm.json]

direct     ``subprocess.run`` of tests/fake_llm_cli.py with the prompt on stdin, its JSON
           output parsed: what any wrapper script has to pay.
agent      the whole per-task path of an llm agent, in-process on a real SQLite queue: send,
           the budget check, claim, prompt rendering (role text + template), the spawn with
           streamed output, the claude preset's parsing, the usage row, the completion with
           its follow-up message, and the session kept (``session: keep``).

The two alternate task by task in one run, so both see the same machine; the overhead is
the difference of the medians (and of the 90th percentiles).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import repo_root  # noqa: F401  (puts this checkout first on sys.path)

from coffee_team.agent.runtime import Agent
from coffee_team.output import FdSink
from coffee_team.queue import MessageQueue
from tests.fast_team import write_team

FAKE = str(repo_root.ROOT / "tests" / "fake_llm_cli.py")
CLI = [sys.executable, FAKE, "--cost", "0.01", "--send", "spec_created"]
ROLE = "You are the architect. " * 40


def team_agents(root: Path) -> dict:
    (root / "role.md").write_text(ROLE)
    return {
        "architect": {"check_interval": 3600, "handles": ["design_request"],
                      "budget": {"usd_per_day": 1e6},
                      "llm": {"command": CLI, "system_prompt_file": str(root / "role.md"),
                              "prompt": "Design ${content.spec_id}: ${content}",
                              "session": "keep"}},
        "code_developer": {"handles": ["spec_created"]},
    }


def direct(prompt: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(CLI, input=prompt.encode(), capture_output=True, check=True)
    json.loads(proc.stdout)
    return time.perf_counter() - started


def through_agent(agent: Agent, q: MessageQueue, n: int) -> float:
    started = time.perf_counter()
    q.send("bench", "architect", "design_request", {"spec_id": f"SPEC-{n}", "text": "x" * 500})
    agent.before_claim()
    [task] = q.claim("architect")
    agent.process(task)
    elapsed = time.perf_counter() - started
    assert q.get_task(task.id)["status"] == "completed"
    return elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctb-", dir="/tmp") as tmp:
        root = Path(tmp)
        team = write_team(root, team_agents(root))
        null = os.open(os.devnull, os.O_WRONLY)
        with MessageQueue.from_team(team) as q:
            agent = Agent(team, "architect", queue=q)
            agent.runner.sink = FdSink(null)  # the log lines go nowhere, as in a quiet log
            agent.runner.attach(q, agent.durable)
            prompt = agent.runner.render(agent.runner.prompt, {
                "id": 1, "type": "design_request", "content": {"spec_id": "SPEC-0"}})
            for n in range(3):  # warm both paths up (page cache, imports)
                direct(prompt), through_agent(agent, q, n)
            times: dict[str, list[float]] = {"direct": [], "agent": []}
            for n in range(args.tasks):
                times["direct"].append(direct(prompt))
                times["agent"].append(through_agent(agent, q, 100 + n))
        os.close(null)
    summary = {name: {"p50_ms": statistics.median(v) * 1000, "p90_ms": percentile(v, 0.9) * 1000,
                      "min_ms": min(v) * 1000} for name, v in times.items()}
    added = {k: summary["agent"][k] - summary["direct"][k] for k in ("p50_ms", "p90_ms")}
    result = {"tasks": args.tasks, **summary, "added": added, "target_p50_added_ms": 20.0,
              "ok": added["p50_ms"] <= 20.0}
    print(f"{'':8} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8}")
    for name in ("direct", "agent"):
        s = summary[name]
        print(f"{name:8} {s['p50_ms']:8.1f} {s['p90_ms']:8.1f} {s['min_ms']:8.1f}")
    print(f"added    {added['p50_ms']:8.1f} {added['p90_ms']:8.1f}   (target p50 <= 20 ms: "
          f"{'ok' if result['ok'] else 'MISSED'})")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
