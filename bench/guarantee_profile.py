"""What each guarantee costs the SQLite agent cycle: its statements run by hand, with one
guarantee's piece taken out at a time, next to the queue's API, huey+result and plain sqlite3.

    python bench/guarantee_profile.py [--n 2000] [--repeat 7] [--json bench/results/guarantees.json]

One process, a fresh database file per run (made by MessageQueue: the real schema, triggers
and pragmas), every variant interleaved with the order rotated per repeat; CPU µs per cycle
(send + complete and claim the next) of this process, where SQLite does its work; medians.
The variants without a piece are measurements only: each drops a guarantee (the bound, the
counts and durations, the claim's guards, dedupe, dependencies), which the queue never does.
``statements by hand`` against ``coffee_team cycle`` is the queue's Python (validation,
routing, JSON, wake-up, the claimed task's object).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time

import repo_root  # noqa: F401  (before coffee_team: this checkout's, not another copy)
from coffee_team.queue import MessageQueue, sql_sqlite
from queue_baselines import AGENT, HueyResult, PlainSqlite, SqliteStorage
from queue_bench import ProjectCycle

_SEND_VALUES = (  # SEND_ONE without its bound check
    "INSERT INTO tasks (sender, recipient, type, content, priority, created_at, dedupe_key,"
    " run_after, traceparent, status, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0)")
_GUARDS = (" AND NOT EXISTS (SELECT 1 FROM agent_pause WHERE agent = ?2"
           " AND (paused_until IS NULL OR paused_until > ?3))",
           " AND NOT EXISTS (SELECT 1 FROM tasks AS held WHERE held.recipient = ?2"
           " AND held.status = 'in_progress' AND held.lease_expires_at < ?3)")
_UNGUARDED = sql_sqlite.COMPLETE_AND_CLAIM
for _guard in _GUARDS:
    if _guard not in _UNGUARDED:  # pragma: no cover - the statement changed: update this file
        raise SystemExit(f"COMPLETE_AND_CLAIM has no {_guard!r}")
    _UNGUARDED = _UNGUARDED.replace(_guard, "")
_PRAGMAS = ("synchronous=normal", "foreign_keys=1", "cache_size=-16384", "recursive_triggers=1")

# name: (schema statements run first, send statement, complete-and-claim statement)
VARIANTS = {
    "statements by hand": ((), sql_sqlite.SEND_ONE, sql_sqlite.COMPLETE_AND_CLAIM),
    "- bound check (send's subquery)": ((), _SEND_VALUES, sql_sqlite.COMPLETE_AND_CLAIM),
    "- bound check and raise (trigger)": (("DROP TRIGGER tasks_count_insert",), _SEND_VALUES,
                                          sql_sqlite.COMPLETE_AND_CLAIM),
    "- completion's count and metrics row": (("DROP TRIGGER tasks_completed",),
                                             sql_sqlite.SEND_ONE, sql_sqlite.COMPLETE_AND_CLAIM),
    "- other ends' count, dependencies": (("DROP TRIGGER tasks_count_update",
                                          "DROP TRIGGER tasks_dependents"),
                                         sql_sqlite.SEND_ONE, sql_sqlite.COMPLETE_AND_CLAIM),
    "- claim's guards (pause, expired lease)": ((), sql_sqlite.SEND_ONE, _UNGUARDED),
    "- live dedupe index": (("DROP INDEX tasks_live_dedupe_key",), sql_sqlite.SEND_ONE,
                            sql_sqlite.COMPLETE_AND_CLAIM),
}


class ByHand:
    """The agent cycle's two statements on the queue's schema, without the queue's Python."""

    def __init__(self, path: str, n: int, variant: str):
        MessageQueue(path, max_queue_size=n + 1).close()
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        for setting in _PRAGMAS:
            self.conn.execute("PRAGMA " + setting)
        schema, self.send_sql, self.cycle_sql = VARIANTS[variant]
        for statement in schema:
            self.conn.execute(statement)
        self.bound = n + 1
        self.held = None

    def send(self, i: int) -> None:
        now = time.time()
        params = ("bench", AGENT, "job", json.dumps(i), 5, now, None, now, None)
        if self.send_sql is sql_sqlite.SEND_ONE:
            params += (AGENT, self.bound)
        self.conn.execute(self.send_sql, params)

    def take(self) -> None:
        now = time.time()
        if self.held is None:
            rows = self.conn.execute(sql_sqlite.CLAIM_ONE,
                                     (AGENT, now, now + 300.0, AGENT, now, 1)).fetchall()
            self.held = rows[0][0]
            return
        for row in self.conn.execute(self.cycle_sql,
                                     (self.held, AGENT, now, "null", now + 300.0)).fetchall():
            if row[0] == "in_progress":
                self.held = row[2]

    def close(self) -> None:
        self.conn.close()


def _make(kind: str, path: str, n: int):
    if kind in VARIANTS:
        return ByHand(path, n, kind)
    return {"coffee_team cycle": ProjectCycle, "huey+result": HueyResult,
            "sqlite3": PlainSqlite}[kind](path, n)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    kinds = list(VARIANTS) + ["coffee_team cycle", "sqlite3"]
    if SqliteStorage is not None:
        kinds.append("huey+result")
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    root = tempfile.mkdtemp(prefix="ctgp")
    try:
        for rep in range(args.repeat):
            for run, kind in enumerate(kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]):
                impl = _make(kind, os.path.join(root, f"{rep}-{run}.db"), args.n)
                start = time.process_time()
                for i in range(args.n):
                    impl.send(i)
                    impl.take()
                cpu[kind].append((time.process_time() - start) / args.n * 1e6)
                impl.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(cpu["statements by hand"])
    out = {"n": args.n, "repeat": args.repeat, "cpu_us": {
        k: {"median": statistics.median(v), "min": min(v), "max": max(v),
            "vs_by_hand": statistics.median(v) - base} for k, v in cpu.items()}}
    print(f"n={args.n} repeat={args.repeat}; CPU µs per agent cycle (send + complete and claim)")
    print("\n| cycle | CPU µs, median (min–max) | vs statements by hand |\n|---|---:|---:|")
    for kind, r in out["cpu_us"].items():
        print(f"| {kind} | {r['median']:.1f} ({r['min']:.0f}–{r['max']:.0f}) "
              f"| {r['vs_by_hand']:+.1f} |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
            fh.write("\n")
    return out


if __name__ == "__main__":
    main()
