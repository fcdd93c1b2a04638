"""Queue stats at a million rows: what ``coffee.getQueueStats`` and ``coffee-team queue`` cost.

    python bench/stats_bench.py [--rows 1000000] [--repeat 20] [--json bench/results/stats.json]

Seeds a fresh SQLite queue with ``--rows`` tasks over six recipients through the queue's own
batch insert (pending rows), then finishes all but a few hundred per recipient with one
UPDATE (the schema-3 triggers count them as any completion would). Times ``stats()`` (the
counters and the claim index) against the GROUP BY over every row that it replaced (issue 18,
finding 11: 0.72 s at 1.2 million rows, run inside supervisord). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from itertools import chain

import repo_root  # noqa: F401  (before coffee_team: this checkout's, not another copy)
from coffee_team.queue import MessageQueue

RECIPIENTS = ("architect", "code_developer", "project_manager", "assistant", "code_searcher",
              "ux_design_expert")
LIVE_PER_RECIPIENT = 300  # pending tasks left per recipient (max_queue_size is 1000)
OLD_STATS = ("SELECT recipient, status, COUNT(*), MIN(created_at) FROM tasks"
             " GROUP BY recipient, status")
FINISH_ALL_BUT_LIVE = ("UPDATE tasks SET status = CASE id % 10 WHEN 0 THEN 'failed'"
                       " WHEN 1 THEN 'cancelled' ELSE 'completed' END, completed_at = created_at"
                       " WHERE id <= ?")
CHUNK = 500


def seed(queue: MessageQueue, rows: int) -> float:
    started = time.perf_counter()
    for name in RECIPIENTS:  # a real send each: every recipient gets its queue_depth row
        queue.send("bench", name, "seed")
    now = time.time()
    with queue.backend.write_transaction():
        for start in range(0, rows, CHUNK):
            chunk = [("bench", RECIPIENTS[i % len(RECIPIENTS)], "work", '{"i":1}', 5, now, None,
                      now, None) for i in range(start, min(rows, start + CHUNK))]
            queue.backend.insert_tasks(list(chain.from_iterable(chunk)), len(chunk))
    live = LIVE_PER_RECIPIENT * len(RECIPIENTS)
    with queue.backend.write_transaction():
        queue.backend.execute(FINISH_ALL_BUT_LIVE, (rows - live,))
    return time.perf_counter() - started


def timings(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(ms: list[float]) -> dict:
    return {"min_ms": round(min(ms), 3), "median_ms": round(statistics.median(ms), 3),
            "max_ms": round(max(ms), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "stats.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ct-stats") as tmp:
        with MessageQueue(os.path.join(tmp, "queue.db")) as queue:
            seeded = seed(queue, args.rows)
            stats = queue.stats()
            old = {(r, s): n for r, s, n, _ in queue.backend.fetchall(OLD_STATS)}
            assert all(stats[r][s] == n for (r, s), n in old.items()), "stats disagree"
            results = {
                "rows": args.rows + len(RECIPIENTS), "repeat": args.repeat,
                "seed_seconds": round(seeded, 1),
                "stats": summary(timings(queue.stats, args.repeat)),
                "old_group_by": summary(timings(lambda: queue.backend.fetchall(OLD_STATS),
                                                max(3, args.repeat // 4))),
            }
    speedup = results["old_group_by"]["median_ms"] / results["stats"]["median_ms"]
    results["speedup"] = round(speedup, 1)
    print(f"{results['rows']:,} rows (seeded in {results['seed_seconds']} s), ms min / median / max")
    print(f"{'what':<42} {'min':>8} {'median':>8} {'max':>8}")
    for label, key in (("stats(): counters + claim index", "stats"),
                       ("before: GROUP BY over every row", "old_group_by")):
        row = results[key]
        print(f"{label:<42} {row['min_ms']:>8.2f} {row['median_ms']:>8.2f} {row['max_ms']:>8.2f}")
    print(f"speed-up {speedup:,.0f}x; target: stats() median under 10 ms "
          f"{'✔' if results['stats']['median_ms'] < 10 else '✘'}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
