"""What one queue cycle costs: statements, transactions, client CPU and wall time per cycle.

    python bench/cycle_profile.py [--pg-url URL] [--n 2000] [--repeat 3]
                                  [--before /work/main] [--json bench/results/cycle_profile.json]

One process, one recipient, no competition: the fixed cost of the calls themselves.  Cycles:

  api    send + claim + mark_completed (the public API, three calls)
  agent  send + complete_and_claim (an agent that completes a task and claims the next)
  raw    the same three statements by hand (psycopg2 / sqlite3, one transaction each): insert
         a pending row, claim it (UPDATE ... RETURNING), complete it

Statements and transactions are counted in a separate pass (sqlite3's trace callback; a
psycopg2 cursor subclass), so counting costs no time in the timed pass.  Client CPU is this
process's CPU time per cycle (for SQLite that includes the database).  With ``--before`` the
same measurements run on another checkout (e.g. main) in a subprocess, interleaved with this
one, repeat by repeat: the "before" columns.  The URL defaults to $COFFEE_TEST_PG_URL.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve()
AGENT = "worker"


# --- one measurement, in a process importing the checkout given by --repo -----------------

def _counting_pg(url: str):
    import psycopg2.extensions

    counts = {"statements": 0, "transactions": 0, "in_tx": False}

    class Counting(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            text = (query.decode() if isinstance(query, bytes) else str(query)).strip().upper()
            counts["statements"] += 1
            if text == "BEGIN":
                counts["in_tx"] = True
            elif text in ("COMMIT", "ROLLBACK"):
                counts["in_tx"] = False
                counts["transactions"] += 1
            elif not counts["in_tx"] and not text.startswith("PREPARE"):
                counts["transactions"] += 1
            return super().execute(query, vars)
    return Counting, counts


def _cycles(q, kind: str, n: int) -> None:
    if kind == "api":
        for i in range(n):
            q.send("bench", AGENT, "job", {"i": i})
            (task,) = q.claim(AGENT)
            q.mark_completed(task.id, None, agent=AGENT)
        return
    q.send("bench", AGENT, "job", {"i": -1})
    (held,) = q.claim(AGENT)
    for i in range(n):
        q.send("bench", AGENT, "job", {"i": i})
        _, (held,) = q.complete_and_claim(held.id, None, agent=AGENT)
    q.mark_completed(held.id, None, agent=AGENT)


def _open(url: str, backend: str, tmp: str, cursor_factory=None):
    from coffee_team.queue import MessageQueue
    from coffee_team.queue.factory import open_database
    db = open_database(url)
    if cursor_factory is not None:
        db.connect_params["cursor_factory"] = cursor_factory
    return MessageQueue(db, max_queue_size=10**7, wake_dir=os.path.join(tmp, "wake"))


def measure_api(backend: str, url: str, kind: str, n: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="ctcp")
    try:
        # counting pass
        counts: dict = {}
        if backend == "sqlite":
            q = _open(os.path.join(tmp, "count.db"), backend, tmp)
            counter = {"statements": 0, "transactions": 0, "in_tx": False}

            def trace(text: str) -> None:
                word = text.strip().upper()
                # sqlite3 traces a trigger's statements (and some subqueries) again under the
                # calling statement's text: one statement, however often it shows
                if word.startswith("--") or word == counter.get("last"):
                    return
                counter["last"] = word
                counter["statements"] += 1
                if word.startswith("BEGIN"):
                    counter["in_tx"] = True
                elif word in ("COMMIT", "ROLLBACK"):
                    counter["in_tx"] = False
                    counter["transactions"] += 1
                elif not counter["in_tx"]:
                    counter["transactions"] += 1
            _cycles(q, kind, 5)  # warm: schema read, first connection
            q.db.connection().set_trace_callback(trace)
            _cycles(q, kind, 100)
            q.db.connection().set_trace_callback(None)
            counts = counter
        else:
            factory, counts = _counting_pg(url)
            q = _open(url, backend, tmp, factory)
            _cycles(q, kind, 5)
            counts.update(statements=0, transactions=0)
            _cycles(q, kind, 100)
        q.close()
        per = {k: counts[k] / 100 for k in ("statements", "transactions")}
        # timed pass on a fresh database
        q = _open(url if backend != "sqlite" else os.path.join(tmp, "time.db"), backend, tmp)
        _cycles(q, kind, 50)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        _cycles(q, kind, n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        q.close()
        return {**per, "cpu_us": cpu / n * 1e6, "wall_us": wall / n * 1e6, "per_s": n / wall}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_raw(backend: str, url: str, n: int) -> dict:
    """The three statements by hand, each its own transaction, on the same schema."""
    tmp = tempfile.mkdtemp(prefix="ctcp")
    try:
        if backend == "sqlite":
            import sqlite3
            path = os.path.join(tmp, "raw.db")
            _open(path, backend, tmp).close()  # the same schema and indexes
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA synchronous = normal")
            ph = "?"
        else:
            import psycopg2
            _open(url, backend, tmp).close()
            dsn_url, _, query = url.partition("?")
            conn = psycopg2.connect(dsn_url, options=_options(query))
            conn.autocommit = True
            ph = "%s"
        insert = ("INSERT INTO tasks (sender, recipient, type, content, priority, created_at,"
                  " run_after, status, attempts) VALUES ({0}, {0}, {0}, {0}, 5, {0}, {0},"
                  " 'pending', 0) RETURNING id").format(ph)
        claim = ("UPDATE tasks SET status = 'in_progress', claimed_by = {0}, claimed_at = {0},"
                 " attempts = attempts + 1 WHERE id IN (SELECT id FROM tasks WHERE"
                 " recipient = {0} AND status = 'pending' ORDER BY priority, id LIMIT 1)"
                 " RETURNING id, content").format(ph)
        complete = ("UPDATE tasks SET status = 'completed', completed_at = {0}, result = {0}"
                    " WHERE id = {0} AND status = 'in_progress'").format(ph)

        def cycles(count: int) -> None:
            cur = conn.cursor()
            for i in range(count):
                now = time.time()
                cur.execute(insert, ("bench", AGENT, "job", json.dumps({"i": i}), now, now))
                cur.fetchone()
                cur.execute(claim, (AGENT, now, AGENT))
                task_id, content = cur.fetchone()
                json.loads(content)
                cur.execute(complete, (now, "null", task_id))
        cycles(50)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        cycles(n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        conn.close()
        return {"statements": 3.0, "transactions": 3.0, "cpu_us": cpu / n * 1e6,
                "wall_us": wall / n * 1e6, "per_s": n / wall}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _options(query: str) -> str:
    from urllib.parse import parse_qsl
    return dict(parse_qsl(query)).get("options", "")


def child(args) -> None:
    sys.path.insert(0, args.repo)
    backend, url = args.backend, args.url
    if args.kind == "raw":
        result = measure_raw(backend, url, args.n)
    else:
        import coffee_team.queue.core as core
        if args.kind == "agent" and not hasattr(core.MessageQueue, "complete_and_claim"):
            result = None  # an older checkout: no fused call
        else:
            result = measure_api(backend, url, args.kind, args.n)
    print(json.dumps(result))


# --- the parent: fresh schema per run, interleaved, table + JSON ------------------------------

def _admin(pg_url: str, statement: str) -> None:
    import psycopg2
    conn = psycopg2.connect(pg_url)
    try:
        conn.autocommit = True
        conn.cursor().execute(statement)
    finally:
        conn.close()


def run_one(repo: str, backend: str, kind: str, n: int, pg_url: str | None):
    schema = None
    url = "sqlite"
    if backend.startswith("postgresql"):
        schema = "ct_cp_" + uuid.uuid4().hex[:10]
        _admin(pg_url, f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in pg_url else "?"
        options = "-csearch_path=" + schema
        if backend == "postgresql-async":  # no fsync per commit: the round trips and CPU show
            options += " -csynchronous_commit=off"
        url = f"{pg_url}{sep}options={quote(options)}"
        backend = "postgresql"
    try:
        out = subprocess.run([sys.executable, str(HERE), "--child", "--repo", repo,
                              "--backend", backend, "--kind", kind, "--url", url,
                              "--n", str(n)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if schema:
            _admin(pg_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("COFFEE_TEST_PG_URL"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", default=None, help="another checkout to compare with")
    parser.add_argument("--json", default=str(HERE.parent / "results" / "cycle_profile.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", default=str(HERE.parent.parent), help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    backends = ["sqlite"] + (["postgresql", "postgresql-async"] if args.pg_url else [])
    repos = {"after": str(HERE.parent.parent)}
    if args.before:
        repos = {"before": args.before, **repos}
    rows = [(r, k) for r in repos for k in ("api", "agent")] + [("raw", "raw")]
    samples: dict = {}
    for _ in range(args.repeat):  # interleaved: every variant once per repeat
        for backend in backends:
            for label, kind in rows:
                repo = repos.get(label, repos["after"])
                result = run_one(repo, backend, kind, args.n, args.pg_url)
                if result is not None:
                    samples.setdefault(f"{backend}/{label}/{kind}", []).append(result)
    table = {}
    for key, runs in samples.items():
        table[key] = {field: statistics.median(r[field] for r in runs) for field in runs[0]}
        table[key]["runs"] = runs
    print(f"{'backend/code/cycle':32} {'stmts':>6} {'txns':>5} {'cpu µs':>8} {'wall µs':>8}"
          f" {'cycles/s':>9} {'vs raw':>7}")
    for key, med in table.items():
        raw = table.get(f"{key.split('/')[0]}/raw/raw")
        ratio = med["per_s"] / raw["per_s"] if raw else float("nan")
        print(f"{key:32} {med['statements']:6.1f} {med['transactions']:5.1f}"
              f" {med['cpu_us']:8.0f} {med['wall_us']:8.0f} {med['per_s']:9.0f} {ratio:6.2f}×")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"n": args.n, "repeat": args.repeat,
                                           "median": {k: {f: v for f, v in m.items()
                                                          if f != "runs"}
                                                      for k, m in table.items()},
                                           "samples": samples}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
