"""``consumers``: queue throughput with 1/2/4/8 consumer processes (claim + mark_completed),
no supervisord involved."""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path)

import multiprocessing
import os
import shutil
import sqlite3
import statistics
import tempfile
import time

from coffee_team.queue import MessageQueue
from lifecycle_common import log, summary

CTX = multiprocessing.get_context("spawn")


def bench_consumers(repeat: int, quick: bool) -> dict:
    n = 500 if quick else 2000
    out = {}
    for k in (1, 2, 4, 8):
        rates = [drain_rate(k, n) for _ in range(repeat)]
        out[str(k)] = summary(rates)
        log(f"consumers {k}: median {statistics.median(rates):.0f} tasks/s")
    return {"tasks_per_second": out, "tasks": n, "runs": repeat,
            "what": "n prefilled tasks for one recipient drained by k processes "
                    "(claim(limit=1) + mark_completed each)"}


def drain_rate(k: int, n: int) -> float:
    """Tasks/s of ``k`` processes, started together, draining ``n`` prefilled tasks."""
    tmp = tempfile.mkdtemp(prefix="cbq-", dir="/tmp")
    procs = []
    try:
        path = os.path.join(tmp, "q.db")
        with MessageQueue(path, max_queue_size=10**7) as q:
            q.send_many([{"sender": "bench", "recipient": "worker", "type": "job",
                          "content": {"i": i}} for i in range(n)])
        ready, go, results = CTX.Semaphore(0), CTX.Event(), CTX.Queue()
        procs = [CTX.Process(target=_consumer, args=(path, ready, go, results))
                 for _ in range(k)]
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=60):
                raise RuntimeError("consumer did not start")
        t0 = time.time()
        go.set()
        got = [results.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(30)
        check_all_completed(path, n, k, sum(g[0] for g in got))
        return n / (max(g[1] for g in got) - t0)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        shutil.rmtree(tmp, ignore_errors=True)


def _consumer(path: str, ready, go, results) -> None:
    q = MessageQueue(path, max_queue_size=10**7)
    try:
        ready.release()
        go.wait()
        done = 0
        while True:
            tasks = q.claim("worker", 1)
            if not tasks:
                break
            q.mark_completed(tasks[0].id)
            done += 1
        results.put((done, time.time()))
    finally:
        q.close()


def check_all_completed(path: str, n: int, k: int, reported: int) -> None:
    """Every task completed exactly once, by the consumers' count and by the database's."""
    if reported != n:
        raise RuntimeError(f"{k} consumers completed {reported} of {n} tasks")
    with sqlite3.connect(path) as conn:
        completed = conn.execute("SELECT COUNT(*) FROM tasks WHERE status = "
                                 "'completed'").fetchone()[0]
    if completed != n:
        raise RuntimeError(f"{completed} of {n} tasks completed in the database")
