"""The SQLite cycle statement by statement: coffee-team next to huey and plain sqlite3.

    python bench/statement_profile.py [--n 2000] [--repeat 5] [--json bench/results/statements.json]

One process, one recipient, a fresh database file per run, the implementations interleaved
(order rotated per repeat).  Each implementation's sqlite3 connection is wrapped so that every
statement it runs (BEGIN and COMMIT included; for huey its cursor's statements and its
connection's commit) is timed in CPU time of this process (SQLite runs in it; a busy machine's
waits left out) from the call to its last row: µs per cycle of each statement, how many a
cycle runs, and the cycle's CPU and wall time; what the statements leave is the Python around
them (the library's and the benchmark's).  What a cycle is:

  coffee_team         send + claim + mark_completed (the separate calls)
  coffee_team cycle   send + complete_and_claim (the agent's loop)
  sqlite3             queue_baselines.PlainSqlite: INSERT, BEGIN IMMEDIATE + claim + COMMIT,
                      UPDATE completion
  huey+result         SqliteStorage enqueue, dequeue, put_data of the result

Medians over the repeats; statements that take < 0.05 µs a cycle are left out.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import tempfile
import time

import repo_root  # noqa: F401  (before coffee_team: this checkout's, not another copy)
from queue_baselines import HueyResult, PlainSqlite, SqliteStorage
from queue_bench import Project, ProjectCycle

TIMES: collections.Counter = collections.Counter()
COUNTS: collections.Counter = collections.Counter()


def _label(statement: str) -> str:
    return " ".join(statement.split())[:70]


class _Rows:
    """A finished statement's rows (fetched inside the timing), with the cursor's fields."""

    def __init__(self, rows, cursor):
        self.rows, self.lastrowid, self.rowcount = rows, cursor.lastrowid, cursor.rowcount
        self.description = cursor.description

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def close(self):
        pass


def _timed(run, statement, params):
    t = time.process_time()
    cursor = run(statement, params)
    rows = _Rows(cursor.fetchall(), cursor)
    key = _label(statement)
    TIMES[key] += time.process_time() - t
    COUNTS[key] += 1
    return rows


class _Cursor:
    def __init__(self, cursor):
        self._cursor = cursor

    def execute(self, statement, params=()):
        self._rows = _timed(self._cursor.execute, statement, params)
        return self._rows

    def fetchall(self):
        return self._rows.fetchall()

    def fetchone(self):
        return self._rows.fetchone()

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class _Connection:
    def __init__(self, conn):
        self._conn = conn

    def execute(self, statement, params=()):
        return _timed(self._conn.execute, statement, params)

    def cursor(self):
        return _Cursor(self._conn.cursor())

    def commit(self):
        t = time.process_time()
        self._conn.commit()
        TIMES["commit()"] += time.process_time() - t
        COUNTS["commit()"] += 1

    def __getattr__(self, name):
        return getattr(self._conn, name)


def wrap(impl) -> None:
    if isinstance(impl, Project):
        local = impl.q.db._local
        impl.q.db.connection()
        local.conn = _Connection(local.conn)
    elif isinstance(impl, PlainSqlite):
        impl.conn = _Connection(impl.conn)
    else:
        impl.s._conn = _Connection(impl.s.conn)


def measure(cls, path: str, n: int) -> dict:
    impl = cls(path, n)
    for i in range(100):  # warm: statement caches, first pages
        impl.send(i)
        impl.take()
    getattr(impl, "finish", lambda: None)()
    wrap(impl)
    TIMES.clear()
    COUNTS.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        impl.send(i)
        impl.take()
    getattr(impl, "finish", lambda: None)()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    impl.close()
    return {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6,
            "statements": {k: {"us": TIMES[k] / n * 1e6, "per_cycle": COUNTS[k] / n}
                           for k in TIMES}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    impls = {"coffee_team": Project, "coffee_team cycle": ProjectCycle, "sqlite3": PlainSqlite}
    if SqliteStorage is not None:
        impls["huey+result"] = HueyResult
    runs: dict[str, list[dict]] = {k: [] for k in impls}
    root = tempfile.mkdtemp(prefix="ctsp")
    try:
        for rep in range(args.repeat):
            kinds = list(impls)
            for kind in kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]:
                path = os.path.join(root, f"{kind.replace(' ', '_')}-{rep}.db")
                runs[kind].append(measure(impls[kind], path, args.n))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {"n": args.n, "repeat": args.repeat, "impls": {}}
    for kind, samples in runs.items():
        names = {name for s in samples for name in s["statements"]}
        stmts = {}
        for name in names:
            us = [s["statements"].get(name, {}).get("us", 0.0) for s in samples]
            per = [s["statements"].get(name, {}).get("per_cycle", 0.0) for s in samples]
            if statistics.median(us) >= 0.05:
                stmts[name] = {"us": statistics.median(us), "per_cycle": statistics.median(per)}
        out["impls"][kind] = {
            "wall_us": {f: g([s["wall_us"] for s in samples]) for f, g in
                        (("min", min), ("median", statistics.median), ("max", max))},
            "cpu_us": statistics.median(s["cpu_us"] for s in samples),
            "in_statements_us": sum(s["us"] for s in stmts.values()),
            "statements": dict(sorted(stmts.items(), key=lambda kv: -kv[1]["us"]))}
    print_table(out)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
            fh.write("\n")
    return out


def print_table(out: dict) -> None:
    print(f"n={out['n']} repeat={out['repeat']}; µs per cycle, medians\n")
    for kind, data in out["impls"].items():
        wall = data["wall_us"]
        total = sum(s["us"] for s in data["statements"].values())
        print(f"## {kind}: CPU {data['cpu_us']:.0f} µs/cycle, in statements {total:.0f} µs; "
              f"wall {wall['median']:.0f} µs ({wall['min']:.0f}–{wall['max']:.0f})")
        print("| CPU µs | per cycle | statement |\n|---:|---:|---|")
        for name, s in data["statements"].items():
            print(f"| {s['us']:.1f} | {s['per_cycle']:.1f} | `{name}` |")
        print()


if __name__ == "__main__":
    main()
