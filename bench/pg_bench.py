"""coffee-team's queue on PostgreSQL next to raw psycopg2, procrastinate and pgqueuer.

    python bench/pg_bench.py [--pg-url URL] [--n 2000] [--repeat 3] [--quick]
                             [--only full-cycle|drain|consumers ...] [--json bench/results/pg.json]

Three scenarios, every implementation side by side in the same run, repeats interleaved (the
order rotated per repeat), each run on a fresh database created for it and dropped after:

- full-cycle: one process sends a task, claims it and completes it, N times: coffee-team's
  separate calls and its agent cycle (complete_and_claim) vs raw psycopg2's three statements;
  besides tasks/s, the CPU per task of the client process and its server process together
  (process_time + /proc/PID/schedstat of the connection's backend), steady on a busy machine.
- drain: N tasks enqueued (untimed, each library's batch enqueue), then drained by one
  consumer process: coffee-team (claim + mark_completed, agent cycle, claim(limit=10)), raw
  psycopg2, procrastinate's worker (async and sync task), pgqueuer (batch 1 and its default 10).
- consumers: N tasks of 5 ms work each drained by 1, 2, 4, 8 consumer processes: coffee-team
  on SQLite and PostgreSQL, raw psycopg2, procrastinate, pgqueuer; the 1 -> 8 scaling factor.

Consumers are spawned, connect and set up, then all start together; tasks/s = N / (the last
consumer done - the common start), so a library's worker start-up (schema check, LISTEN) is
inside the time.  The parent then counts the completed tasks in the database: a run that did
not complete exactly N is an error, not a number.  What each implementation does per task is
in bench/pg_consumers.py and bench/README.md.  synchronous_commit stays on (the server's
setting is recorded); SQLite runs WAL with synchronous=NORMAL.  The URL defaults to
$COFFEE_TEST_PG_URL; databases are created next to the one it names.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from pg_consumers import AGENT, CT_AGENT_CYCLE, CT_CYCLE_LABEL, KINDS, RawQueue, consumer_main, ct_open

CTX = multiprocessing.get_context("spawn")
FULL_CYCLE = {"coffee-team": "coffee-team send + claim + mark_completed",
              "coffee-team cycle": f"coffee-team send + agent cycle ({CT_CYCLE_LABEL})",
              "psycopg2": "raw psycopg2 INSERT + claim + UPDATE"}
DRAIN = ("coffee-team", "coffee-team cycle", "coffee-team batch", "psycopg2", "procrastinate",
         "procrastinate sync", "pgqueuer 1", "pgqueuer")
CONSUMERS = ("coffee-team sqlite", "coffee-team cycle", "psycopg2", "procrastinate", "pgqueuer")
WORK_S = 0.005


def missing_anchors() -> dict[str, str]:
    """{kind: the module it needs} for the anchors whose library is not installed."""
    import importlib.util
    need = {"procrastinate": "procrastinate", "procrastinate sync": "procrastinate",
            "pgqueuer 1": "pgqueuer", "pgqueuer": "pgqueuer"}
    found = {m: importlib.util.find_spec(m) is not None for m in ("procrastinate", "pgqueuer",
                                                                  "asyncpg")}
    return {kind: module for kind, module in need.items()
            if not found[module] or (module == "pgqueuer" and not found["asyncpg"])}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _admin(pg_url: str, sql: str):
    import psycopg2
    conn = psycopg2.connect(pg_url)
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchone() if cur.description else None
    finally:
        conn.close()


@contextmanager
def fresh_database(pg_url: str, backend: str):
    """A new PostgreSQL database (or SQLite file) for one run, gone afterwards."""
    if backend == "sqlite":
        tmp = tempfile.mkdtemp(prefix="ctpgb")
        try:
            yield os.path.join(tmp, "queue.db")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    parts = urlsplit(pg_url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_b{uuid.uuid4().hex[:8]}"
    _admin(pg_url, f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        _admin(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- full cycle: one process --------------------------------------------------------------
def _on_cpu(backend_pid: int) -> float:
    """Seconds on a CPU of this process plus the server process of its connection (its
    schedstat, ns; the server runs on this machine): the work itself, which a busy machine's
    waits do not blur. 0 for the server when its /proc entry cannot be read."""
    try:
        with open(f"/proc/{backend_pid}/schedstat") as fh:
            server = int(fh.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        server = 0.0
    return time.process_time() + server


CPU_PER_TASK: dict = {}  # kind -> [CPU µs per task, client + server, one per run]


def full_cycle(kind: str, url: str, n: int) -> float:
    if kind == "psycopg2":
        q = RawQueue(url)
        q.create()
        pid = q.conn.get_backend_pid()
        cpu, t = _on_cpu(pid), time.perf_counter()
        for i in range(n):
            q.send({"i": i})
            task_id, _ = q.claim()
            q.complete(task_id)
        elapsed = time.perf_counter() - t
    else:
        q = ct_open(url)
        pid = q.db.connection().get_backend_pid()
        cpu, t = _on_cpu(pid), time.perf_counter()
        if kind == "coffee-team cycle" and CT_AGENT_CYCLE:
            q.send("bench", AGENT, "job", {"i": 0})
            tasks = q.claim(AGENT)
            for i in range(1, n):
                q.send("bench", AGENT, "job", {"i": i})
                _, tasks = q.complete_and_claim(tasks[0].id, None, agent=AGENT)
            q.mark_completed(tasks[0].id, None, agent=AGENT)
        else:
            for i in range(n):
                q.send("bench", AGENT, "job", {"i": i})
                q.mark_completed(q.claim(AGENT)[0].id, None, agent=AGENT)
        elapsed = time.perf_counter() - t
    CPU_PER_TASK.setdefault(kind, []).append((_on_cpu(pid) - cpu) / n * 1e6)
    q.close()
    check(kind, url, n)
    return n / elapsed


def check(kind: str, url: str, n: int) -> None:
    completed = KINDS[kind].count(url)
    if completed != n:
        raise RuntimeError(f"{kind}: {completed} of {n} tasks completed in the database")


# -- drain with k consumer processes ------------------------------------------------------
def drain(kind: str, url: str, n: int, consumers: int, work_s: float) -> float:
    KINDS[kind].prefill(url, n)
    ready, go, results = CTX.Semaphore(0), CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=consumer_main, args=(kind, url, work_s, ready, go, results))
             for _ in range(consumers)]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError(f"{kind}: a consumer did not start")
        t0 = time.time()
        go.set()
        got = [results.get(timeout=900) for _ in procs]
        for p in procs:
            p.join(60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    errors = [e for _, _, e in got if e]
    if errors:
        raise RuntimeError(f"{kind} x{consumers}: {errors[0]}")
    check(kind, url, n)
    return n / (max(t for _, t, _ in got) - t0)


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "samples": values}


def rotated(kinds, rep: int) -> list[str]:
    kinds = list(kinds)
    return kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]


def run(pg_url: str, scenarios: list[str], n: int, n_consumers: int, repeat: int,
        procs: list[int]) -> dict:
    missing = missing_anchors()
    for module in sorted(set(missing.values())):
        log(f"pg_bench: {module} is not installed: its anchors are skipped "
            "(pip install -e '.[bench]')")
    rates: dict = {"full-cycle": {k: [] for k in FULL_CYCLE},
                   "drain": {k: [] for k in DRAIN if k not in missing},
                   "consumers": {k: {p: [] for p in procs} for k in CONSUMERS if k not in missing}}
    for rep in range(repeat):
        if "full-cycle" in scenarios:
            for kind in rotated(FULL_CYCLE, rep):
                with fresh_database(pg_url, "postgresql") as url:
                    rates["full-cycle"][kind].append(full_cycle(kind, url, n))
                log(f"repeat {rep + 1} full-cycle {kind}: {rates['full-cycle'][kind][-1]:,.0f}/s")
        if "drain" in scenarios:
            for kind in rotated(rates["drain"], rep):
                with fresh_database(pg_url, KINDS[kind].backend) as url:
                    rates["drain"][kind].append(drain(kind, url, n, 1, 0.0))
                log(f"repeat {rep + 1} drain {kind}: {rates['drain'][kind][-1]:,.0f}/s")
        if "consumers" in scenarios:
            for p in procs:
                for kind in rotated(rates["consumers"], rep):
                    with fresh_database(pg_url, KINDS[kind].backend) as url:
                        rates["consumers"][kind][p].append(drain(kind, url, n_consumers, p, WORK_S))
                    log(f"repeat {rep + 1} consumers x{p} {kind}: "
                        f"{rates['consumers'][kind][p][-1]:,.0f}/s")
    out: dict = {}
    for scenario in ("full-cycle", "drain"):
        if scenario in scenarios:
            out[scenario] = {k: dict(summary(v), label=(FULL_CYCLE[k] if scenario == "full-cycle"
                                                        else KINDS[k].label))
                             for k, v in rates[scenario].items()}
    for kind, cpu in CPU_PER_TASK.items():
        out["full-cycle"][kind]["cpu_us_per_task"] = summary(cpu)
    if "consumers" in scenarios:
        out["consumers"] = {}
        for kind, by_p in rates["consumers"].items():
            entry = {"label": KINDS[kind].label, "by_consumers": {str(p): summary(v)
                                                                  for p, v in by_p.items()}}
            if 1 in by_p and 8 in by_p:
                entry["scaling_1_to_8"] = (statistics.median(by_p[8])
                                           / statistics.median(by_p[1]))
            out["consumers"][kind] = entry
    return out


def fmt(s: dict) -> str:
    return f"{s['min']:,.0f} / **{s['median']:,.0f}** / {s['max']:,.0f}"


def table(doc: dict) -> str:
    lines = [f"PostgreSQL {doc['server_version']}, synchronous_commit={doc['synchronous_commit']}"
             f"; n={doc['n']} (consumers: {doc['n_consumers']} tasks of {WORK_S * 1000:g} ms)"
             f"; {doc['repeat']} repeats; tasks/s min / **median** / max", ""]
    for scenario, base in (("full-cycle", "psycopg2"), ("drain", "psycopg2")):
        rows = doc["results"].get(scenario)
        if not rows:
            continue
        lines += [f"| {scenario} | tasks/s | vs raw psycopg2 | CPU µs per task (client + server)"
                  " | per CPU vs raw |", "|---|---:|---:|---:|---:|"]
        for kind, s in rows.items():
            cpu, raw_cpu = s.get("cpu_us_per_task"), rows[base].get("cpu_us_per_task")
            lines.append(f"| {s['label']} | {fmt(s)} | "
                         f"{s['median'] / rows[base]['median']:.2f}× | "
                         + (f"{fmt(cpu)} | {raw_cpu['median'] / cpu['median']:.2f}× |"
                            if cpu and raw_cpu else "– | – |"))
        lines.append("")
    sweep = doc["results"].get("consumers")
    if sweep:
        ks = list(next(iter(sweep.values()))["by_consumers"])
        lines += ["| consumers (5 ms work) | " + " | ".join(ks) + " | 1 → 8 |",
                  "|---|" + "---:|" * (len(ks) + 1)]
        for kind, entry in sweep.items():
            scale = entry.get("scaling_1_to_8")
            lines.append(f"| {entry['label']} | "
                         + " | ".join(fmt(entry["by_consumers"][k]) for k in ks)
                         + f" | {'–' if scale is None else f'{scale:.2f}×'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get(
        "COFFEE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--n", type=int, default=None, help="tasks per run (default 2000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--quick", action="store_true", help="fewer tasks per run (500, 400)")
    parser.add_argument("--only", action="append", choices=["full-cycle", "drain", "consumers"])
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "results", "pg.json"))
    args = parser.parse_args(argv)
    n = args.n or (500 if args.quick else 2000)
    n_consumers = args.n or (400 if args.quick else 2000)
    scenarios = args.only or ["full-cycle", "drain", "consumers"]
    procs = [int(p) for p in args.procs.split(",")]
    try:
        version = _admin(args.pg_url, "SHOW server_version")[0]
        sync_commit = _admin(args.pg_url, "SHOW synchronous_commit")[0]
    except Exception as exc:  # noqa: BLE001  (any driver error: one line, not a traceback)
        print(f"pg_bench: cannot reach PostgreSQL at {args.pg_url}: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return 2
    doc = {"benchmark": "coffee-team vs raw psycopg2, procrastinate, pgqueuer on PostgreSQL",
           "n": n, "n_consumers": n_consumers, "work_ms": WORK_S * 1000, "repeat": args.repeat,
           "quick": args.quick, "server_version": version, "synchronous_commit": sync_commit,
           "agent_cycle": CT_CYCLE_LABEL, "python": platform.python_version(),
           "cpus": os.cpu_count(),
           "results": run(args.pg_url, scenarios, n, n_consumers, args.repeat, procs)}
    print(table(doc))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    old = {}
    if args.only and os.path.exists(args.json):  # keep the scenarios not rerun
        try:
            old = json.load(open(args.json)).get("results", {})
        except ValueError:
            old = {}
    doc["results"] = {**old, **doc["results"]}
    with open(args.json, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
