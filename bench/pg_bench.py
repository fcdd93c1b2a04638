"""MessageQueue on PostgreSQL next to SQLite: 1, 2, 4, 8 consumer processes.

    python bench/pg_bench.py [--pg-url postgresql://postgres@127.0.0.1:5432/test]
                             [--n 2000] [--repeat 3] [--procs 1,2,4,8] [--json bench/results/pg.json]

One full cycle is send + claim + complete, each its own transaction, through the public
MessageQueue API.  P processes share one recipient; each sends its share of N tasks, claiming
and completing one task after every send (often one another process sent: claims compete),
then drains until the queue is empty.  msgs/s = N / (last process done - common start); the
parent checks that exactly N tasks were completed.  Every repeat gets a fresh database (a new
SQLite file in a temp dir; a new PostgreSQL schema, dropped afterwards); repeats are
interleaved across backends.  The URL defaults to $COFFEE_TEST_PG_URL.

Durability differs by default: SQLite runs WAL with synchronous=NORMAL (no fsync per commit:
safe against process crashes, not power loss) while PostgreSQL's synchronous_commit=on
fsyncs every commit.  "postgresql (async commit)" adds ``options=-csynchronous_commit=off``
to the URL, PostgreSQL's equivalent of SQLite's setting (a crash of the OS may lose the
last few hundred ms of commits; never corrupts, never reorders).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from urllib.parse import quote

import repo_root  # noqa: F401  (before coffee_team: this checkout's, not another copy)
from coffee_team.queue import MessageQueue

AGENT = "worker"
ctx = multiprocessing.get_context("spawn")


def worker(url: str, wake_dir: str, count: int, ready, start, done) -> None:
    q = MessageQueue(url, max_queue_size=10**7, wake_dir=wake_dir)
    try:
        ready.put(os.getpid())
        start.wait()
        completed = 0
        for i in range(count):
            q.send("bench", AGENT, "job", {"i": i})
            for task in q.claim(AGENT):
                q.mark_completed(task.id, None)
                completed += 1
        while True:
            tasks = q.claim(AGENT)
            if not tasks:
                break
            q.mark_completed(tasks[0].id, None)
            completed += 1
        done.put((time.time(), completed))
    finally:
        q.close()


def _admin(pg_url: str, sql: str) -> None:
    import psycopg2
    conn = psycopg2.connect(pg_url)
    try:
        conn.autocommit = True
        conn.cursor().execute(sql)
    finally:
        conn.close()


BACKENDS = {"sqlite": "SQLite (WAL, synchronous=NORMAL)",
            "postgresql": "PostgreSQL (synchronous_commit=on)",
            "postgresql-async": "PostgreSQL (synchronous_commit=off)"}


def one_run(backend: str, procs: int, n: int, pg_url: str | None) -> float:
    tmp = tempfile.mkdtemp(prefix="ctpgb")
    schema = None
    if backend == "sqlite":
        url = os.path.join(tmp, "queue.db")
    else:
        schema = "bench_" + uuid.uuid4().hex[:10]
        _admin(pg_url, f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in pg_url else "?"
        options = "-csearch_path=" + schema
        if backend == "postgresql-async":
            options += " -csynchronous_commit=off"
        url = f"{pg_url}{sep}options={quote(options)}"
    try:
        MessageQueue(url).close()  # create the schema once, outside the timing
        ready, done, start = ctx.Queue(), ctx.Queue(), ctx.Event()
        shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        workers = [ctx.Process(target=worker, args=(url, os.path.join(tmp, "wake"), share,
                                                    ready, start, done)) for share in shares]
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=60)
        t0 = time.time()
        start.set()
        results = [done.get(timeout=600) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        completed = sum(c for _, c in results)
        if completed != n:
            raise SystemExit(f"{backend} x{procs}: completed {completed} of {n} tasks")
        return n / (max(t for t, _ in results) - t0)
    finally:
        if schema:
            _admin(pg_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("COFFEE_TEST_PG_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results",
                                                       "pg.json"))
    args = parser.parse_args()
    procs_list = [int(p) for p in args.procs.split(",")]
    backends = list(BACKENDS)
    runs: dict[str, dict[int, list[float]]] = {b: {p: [] for p in procs_list} for b in backends}
    for r in range(args.repeat):
        for procs in procs_list:
            for backend in backends:
                rate = one_run(backend, procs, args.n, args.pg_url)
                runs[backend][procs].append(rate)
                print(f"repeat {r + 1}: {backend:10s} x{procs}: {rate:8.0f} msgs/s",
                      file=sys.stderr, flush=True)
    rows = []
    lines = ["| consumers | " + " | ".join(f"{BACKENDS[b]} msgs/s (min / **median** / max)"
                                         for b in backends) + " |",
             "|---:|" + "---:|" * len(backends)]
    for procs in procs_list:
        cells, medians = [], {}
        for backend in backends:
            values = runs[backend][procs]
            medians[backend] = statistics.median(values)
            cells.append(f"{min(values):,.0f} / **{medians[backend]:,.0f}** / {max(values):,.0f}")
            rows.append({"backend": backend, "consumers": procs, "msgs_per_s": values,
                         "min": min(values), "median": medians[backend], "max": max(values)})
        lines.append(f"| {procs} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    import platform
    result = {"benchmark": "send+claim+complete, one recipient, P processes",
              "n": args.n, "repeat": args.repeat, "python": platform.python_version(),
              "cpus": os.cpu_count(), "results": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
