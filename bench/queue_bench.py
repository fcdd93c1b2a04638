"""Throughput and latency of coffee_team.queue.MessageQueue vs plain sqlite3.

    python bench/queue_bench.py [--n 5000] [--repeat 3] [--json bench/results/queue.json]

Every implementation runs in this process (or its children) on fresh database
files in the same directory, so the disk and Python are the same; repeats are
interleaved across implementations.  The plain sqlite3 baseline does the same
logical work as little as SQLite allows: WAL, synchronous=NORMAL, the same task
columns and claim index, JSON content and results, a claim that takes a lease
via one UPDATE ... RETURNING inside BEGIN IMMEDIATE, and a completion.  It has
none of coffee_team's guarantees beyond that (backpressure, dedupe, metrics,
wake-ups, validation, routing).  huey, persist-queue and litequeue
(bench/queue_baselines.py) are added when importable (pip install -e .[bench]).  Reported: min/median/max msgs/s over the
repeats and median / median of sqlite3, and the median tasks per CPU second of this process
(SQLite works inside it, so this is the work itself, steadier than wall time under load).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import tempfile
import time

import repo_root  # noqa: F401  (before coffee_team: this checkout's, not another copy)
from coffee_team.queue import MessageQueue
from queue_baselines import (AGENT, Huey, HueyResult, LiteQueue, PersistQueue, PlainSqlite,
                             SqliteStorage, litequeue, persistqueue)

CYCLE = hasattr(MessageQueue, "complete_and_claim")
CYCLE_LABEL = ("complete_and_claim" if CYCLE
               else "claim + mark_completed: complete_and_claim() not in this checkout")

DUPLICATES: dict[str, int] = {}  # 1 producer + 2 consumers: deliveries beyond one per message
BATCH = 100
ctx = multiprocessing.get_context("spawn")


class Project:
    name = "coffee_team"

    def __init__(self, path: str, n: int):
        self.q = MessageQueue(path, max_queue_size=n + 1, wake_dir=path + ".w")

    def send(self, content):
        self.q.send("bench", AGENT, "job", content)

    def send_many(self, contents):
        self.q.send_many([{"sender": "bench", "recipient": AGENT, "type": "job", "content": c}
                          for c in contents])

    def take(self):
        """Claim one task and complete it; return its content or None."""
        tasks = self.q.claim(AGENT)
        if not tasks:
            return None
        self.q.mark_completed(tasks[0].id)
        return tasks[0].content

    def idle(self):
        self.q.wait(AGENT, 0.5)

    def finish(self):
        """Complete what take() still holds (nothing: take() completes at once)."""

    def close(self):
        self.q.close()


class ProjectCycle(Project):
    """The agent's loop: complete the task it holds and claim the next in one transaction
    (MessageQueue.complete_and_claim); where this checkout's queue has no such method, the
    separate claim + mark_completed(agent=...) (CYCLE_LABEL says which ran)."""
    name = "coffee_team cycle"
    consumes_only = True  # its sending is Project's

    def __init__(self, path: str, n: int):
        super().__init__(path, n)
        self.held = None

    def take(self):
        if self.held is None or not CYCLE:
            if self.held is not None:
                self.q.mark_completed(self.held.id, None, agent=AGENT)
            tasks = self.q.claim(AGENT)
        else:
            _, tasks = self.q.complete_and_claim(self.held.id, None, agent=AGENT)
        self.held = tasks[0] if tasks else None
        return None if self.held is None else self.held.content

    def finish(self):
        if self.held is not None:
            self.q.mark_completed(self.held.id, None, agent=AGENT)
            self.held = None

    def close(self):
        self.finish()
        super().close()


IMPLS = {cls.name: cls for cls in (Project, ProjectCycle, PlainSqlite,
                                   Huey if SqliteStorage else None,
                                   HueyResult if SqliteStorage else None,
                                   PersistQueue if persistqueue else None,
                                   LiteQueue if litequeue else None) if cls}


# -- scenarios: each returns elapsed seconds for n messages -----------------
def enqueue(impl, n):
    t = time.perf_counter()
    for i in range(n):
        impl.send(i)
    return time.perf_counter() - t


def batch_enqueue(impl, n):
    t = time.perf_counter()
    for start in range(0, n, BATCH):
        impl.send_many(list(range(start, min(n, start + BATCH))))
    return time.perf_counter() - t


def drain(impl, n):
    batch_enqueue(impl, n)
    t = time.perf_counter()
    done = 0
    while impl.take() is not None:
        done += 1
    assert done == n, (done, n)
    return time.perf_counter() - t


def full_cycle(impl, n):
    t = time.perf_counter()
    for i in range(n):
        impl.send(i)
        assert impl.take() == i
    getattr(impl, "finish", lambda: None)()  # a held task's completion is part of the cycle
    return time.perf_counter() - t


def _consumer(kind, path, n, stop_file, out_file):
    impl = IMPLS[kind](path, n)
    done = 0
    while True:
        if impl.take() is not None:
            done += 1
        elif os.path.exists(stop_file):
            break
        else:
            impl.idle()
    impl.close()
    with open(out_file, "w") as f:
        f.write(str(done))


def one_producer_two_consumers(impl, n, kind, path):
    stop, outs = path + ".stop", [path + f".c{i}" for i in range(2)]
    consumers = [ctx.Process(target=_consumer, args=(kind, path, n, stop, o)) for o in outs]
    for c in consumers:
        c.start()
    time.sleep(0.5)  # let the children import and connect before timing
    t = time.perf_counter()
    for i in range(n):
        impl.send(i)
    while impl_pending(kind, path):
        time.sleep(0.001)
    open(stop, "w").close()
    for c in consumers:
        c.join()
    elapsed = time.perf_counter() - t
    delivered = sum(int(open(o).read()) for o in outs)
    assert delivered >= n, (kind, delivered, n)  # lost messages would be a broken run
    DUPLICATES[kind] = DUPLICATES.get(kind, 0) + delivered - n
    return elapsed


def impl_pending(kind, path) -> bool:
    if hasattr(IMPLS[kind], "pending"):
        return IMPLS[kind].pending(path)
    conn = sqlite3.connect(path, timeout=5)
    try:
        if kind.startswith("huey"):
            return conn.execute("SELECT COUNT(*) FROM task").fetchone()[0] > 0
        return conn.execute("SELECT COUNT(*) FROM tasks WHERE status != 'completed'").fetchone()[0] > 0
    finally:
        conn.close()


def _latency_consumer(kind, path, count, out_file):
    impl = IMPLS[kind](path, count)
    lat = []
    while len(lat) < count:
        content = impl.take()
        if content is None:
            impl.idle()
        else:
            lat.append((time.time() - content) * 1000)
    impl.close()
    with open(out_file, "w") as f:
        json.dump(lat, f)


def latency(kind, path, count=200):
    """send -> claim latency across processes, one message every 10 ms."""
    impl = IMPLS[kind](path, count)
    out = path + ".lat"
    consumer = ctx.Process(target=_latency_consumer, args=(kind, path, count, out))
    consumer.start()
    time.sleep(0.5)
    for _ in range(count):
        impl.send(time.time())
        time.sleep(0.01)
    consumer.join(60)
    impl.close()
    lat = sorted(json.load(open(out)))
    return {"p50_ms": round(lat[len(lat) // 2], 3), "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 3),
            "max_ms": round(lat[-1], 3)}


DURABILITY = ("WAL + synchronous=NORMAL: coffee_team, sqlite3, litequeue (its own setting), "
              "huey (its default WAL; PRAGMA synchronous=normal set on its connection); "
              "persist-queue: WAL + SQLite's default synchronous=FULL")
CONSUMING = ("drain", "full cycle", "1 producer + 2 consumers")
SCENARIOS = {"enqueue": enqueue, "batch enqueue": batch_enqueue, "drain": drain,
             "full cycle": full_cycle, "1 producer + 2 consumers": one_producer_two_consumers}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="write results here")
    parser.add_argument("--dir", default=None, help="where the databases go (default: a temp dir)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS) + ["latency"],
                        help="run just this scenario (repeatable)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="qb", dir=args.dir)
    results = {"n": args.n, "repeat": args.repeat, "sqlite_version": sqlite3.sqlite_version,
               "durability": DURABILITY, "agent_cycle": CYCLE_LABEL,
               "throughput": {}, "latency": {}}
    try:
        run = 0
        for scenario, fn in SCENARIOS.items():
            if args.only and scenario not in args.only:
                continue
            kinds = [k for k in IMPLS if scenario in CONSUMING
                     or not getattr(IMPLS[k], "consumes_only", False)]
            rates: dict[str, list[float]] = {kind: [] for kind in kinds}
            cpu_rates: dict[str, list[float]] = {kind: [] for kind in kinds}
            for rep in range(args.repeat):
                # Interleaved, order rotated per repeat: a noisy neighbour or a
                # warming disk cache hits every implementation alike.
                for kind in kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]:
                    run += 1
                    path = os.path.join(root, f"{run}.db")
                    impl = IMPLS[kind](path, args.n)
                    extra = (kind, path) if fn is one_producer_two_consumers else ()
                    cpu = time.process_time()
                    rates[kind].append(args.n / fn(impl, args.n, *extra))
                    # tasks per CPU second of this process (the database's work included, for
                    # all but the consumer processes): steadier than wall time on a busy machine
                    cpu_rates[kind].append(args.n / max(time.process_time() - cpu, 1e-9))
                    impl.close()
            base = statistics.median(rates["sqlite3"])
            for kind, r in rates.items():
                results["throughput"].setdefault(scenario, {})[kind] = {
                    "min": min(r), "median": statistics.median(r), "max": max(r),
                    "vs_sqlite3": statistics.median(r) / base}
                if fn is not one_producer_two_consumers:
                    c = cpu_rates[kind]
                    results.setdefault("cpu_throughput", {}).setdefault(scenario, {})[kind] = {
                        "min": min(c), "median": statistics.median(c), "max": max(c)}
        for kind in IMPLS if not args.only or "latency" in args.only else ():
            if getattr(IMPLS[kind], "consumes_only", False):
                continue  # the same hand-over as its parent class
            run += 1
            results["latency"][kind] = latency(kind, os.path.join(root, f"{run}.db"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["duplicates_1p2c"] = dict(DUPLICATES)
    print_table(results)
    for name, module in (("huey", SqliteStorage), ("persist-queue", persistqueue),
                         ("litequeue", litequeue)):
        if module is None:
            print(f"\n{name} not installed: its baseline was skipped (pip install -e .[bench]).")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def print_table(results):
    kinds = list(IMPLS)
    print(f"n={results['n']} repeat={results['repeat']} sqlite {results['sqlite_version']}\n")
    print("| scenario | impl | msgs/s min | median | max | median vs sqlite3 | per CPU-s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for scenario, by_kind in results["throughput"].items():
        for kind in (k for k in kinds if k in by_kind):
            r = by_kind[kind]
            c = results.get("cpu_throughput", {}).get(scenario, {}).get(kind)
            per_cpu = "–" if c is None else f"{c['median']:,.0f}"
            print(f"| {scenario} | {kind} | {r['min']:,.0f} | {r['median']:,.0f} | {r['max']:,.0f}"
                  f" | {r['vs_sqlite3']:.2f}x | {per_cpu} |")
    dup = results.get("duplicates_1p2c", {})
    if dup:
        print("\nduplicate deliveries in 1 producer + 2 consumers (all repeats): "
              + ", ".join(f"{k} {v}" for k, v in dup.items()))
    print("\n| send->claim latency (1 msg/10 ms, other process) | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    for kind, lat in results["latency"].items():
        print(f"| {kind} | {lat['p50_ms']} | {lat['p99_ms']} | {lat['max_ms']} |")


if __name__ == "__main__":
    main()
