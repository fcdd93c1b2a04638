"""What bench/pg_bench.py drives: coffee-team and its anchors, each as prefill / consume / count.

Every implementation works on a fresh database (pg_bench.py creates and drops it) and keeps
one rule: a consumer process runs one task at a time, so consumer processes are the unit of
concurrency.  Work, when there is any, blocks the consumer for ``work_s`` (time.sleep: a
synchronous call or CPU work, what an agent's handler does while it holds its task); in the
asyncio libraries that also means the next task starts only after it.

- coffee-team: the public MessageQueue API.  "separate" claims one task, then
  mark_completed(agent=...) (the "same three statements" comparison); "agent cycle" completes
  and claims the next in one transaction with complete_and_claim() where the queue has it (the
  label says which ran); "batch" claims pgqueuer's default batch (10) and completes each.
- raw psycopg2: a minimal queue table (the columns that matter, an index on (recipient,
  status, priority, id)), autocommit: INSERT; UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
  SKIP LOCKED) RETURNING; UPDATE ... status = 'completed'.
- procrastinate (3.x): App(PsycopgConnector), a task deferred with batch_defer_async, its
  worker run_worker_async(concurrency=1, wait=False), which stops once the queue is empty.
  Jobs are kept (delete_jobs "never", its default), status 'succeeded'.
- pgqueuer (1.x): PgQueuer.from_asyncpg_connection with one async entrypoint, jobs enqueued with
  Queries.enqueue (lists), run(batch_size=..., mode=drain).  Its completions wait in an
  in-memory buffer (flushed at batch_size entries or every ~0.1 s), so a crash loses up to
  that many completions and their jobs run again.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import repo_root  # noqa: F401  (before coffee_team: this checkout's, not another copy)
from coffee_team.queue import MessageQueue

AGENT = "worker"
PGQUEUER_DEFAULT_BATCH = 10  # QueueManager.run's batch_size default
CT_AGENT_CYCLE = hasattr(MessageQueue, "complete_and_claim")
CT_CYCLE_LABEL = ("complete_and_claim" if CT_AGENT_CYCLE
                  else "claim + mark_completed: complete_and_claim() not in this checkout")


def _sleep(work_s: float) -> None:
    if work_s:
        time.sleep(work_s)


# -- coffee-team ------------------------------------------------------------------------
def ct_open(url: str) -> MessageQueue:
    return MessageQueue(url, max_queue_size=10**7)


def ct_prefill(url: str, n: int) -> None:
    with ct_open(url) as q:
        for start in range(0, n, 1000):
            q.send_many([{"sender": "bench", "recipient": AGENT, "type": "job",
                          "content": {"i": i}} for i in range(start, min(n, start + 1000))])


def ct_consume_separate(q: MessageQueue, work_s: float) -> int:
    done = 0
    while True:
        tasks = q.claim(AGENT)
        if not tasks:
            return done
        _sleep(work_s)
        q.mark_completed(tasks[0].id, None, agent=AGENT)
        done += 1


def ct_consume_cycle(q: MessageQueue, work_s: float) -> int:
    if not CT_AGENT_CYCLE:
        return ct_consume_separate(q, work_s)
    done, tasks = 0, q.claim(AGENT)
    while tasks:
        _sleep(work_s)
        ok, tasks = q.complete_and_claim(tasks[0].id, None, agent=AGENT)
        done += ok
    return done


def ct_consume_batch(q: MessageQueue, work_s: float) -> int:
    done = 0
    while True:
        tasks = q.claim(AGENT, limit=PGQUEUER_DEFAULT_BATCH)
        if not tasks:
            return done
        for task in tasks:
            _sleep(work_s)
            done += q.mark_completed(task.id, None, agent=AGENT)


def ct_count(url: str) -> int:
    if url.startswith("postgresql"):
        return raw_count(url, "SELECT count(*) FROM tasks WHERE status = 'completed'")
    with sqlite3.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM tasks WHERE status = 'completed'").fetchone()[0]


# -- raw psycopg2 -----------------------------------------------------------------------
RAW_SCHEMA = """
CREATE TABLE tasks (id BIGSERIAL PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    type TEXT NOT NULL, content TEXT NOT NULL, priority INTEGER NOT NULL,
    status TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, claimed_by TEXT,
    claimed_at DOUBLE PRECISION, lease_expires_at DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0, completed_at DOUBLE PRECISION, result TEXT);
CREATE INDEX tasks_claim ON tasks (recipient, status, priority, id);
"""
RAW_INSERT = ("INSERT INTO tasks (sender, recipient, type, content, priority, status, created_at)"
              " VALUES (%s, %s, %s, %s, 5, 'pending', %s)")
RAW_CLAIM = ("UPDATE tasks SET status = 'in_progress', claimed_by = %s, claimed_at = %s,"
             " lease_expires_at = %s, attempts = attempts + 1 WHERE id IN"
             " (SELECT id FROM tasks WHERE recipient = %s AND status = 'pending'"
             " ORDER BY priority, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
             " RETURNING id, sender, type, content, priority, attempts")
RAW_COMPLETE = ("UPDATE tasks SET status = 'completed', completed_at = %s, result = %s"
                " WHERE id = %s AND status = 'in_progress' AND claimed_by = %s")


class RawQueue:
    """The three statements, each its own (autocommit) transaction, nothing else."""

    def __init__(self, url: str):
        import psycopg2
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True
        self.cur = self.conn.cursor()

    def create(self) -> None:
        self.cur.execute(RAW_SCHEMA)

    def send(self, content) -> None:
        self.cur.execute(RAW_INSERT, ("bench", AGENT, "job", json.dumps(content), time.time()))

    def claim(self):
        now = time.time()
        self.cur.execute(RAW_CLAIM, (AGENT, now, now + 300.0, AGENT))
        row = self.cur.fetchone()
        return None if row is None else (row[0], json.loads(row[3]))

    def complete(self, task_id: int) -> None:
        self.cur.execute(RAW_COMPLETE, (time.time(), json.dumps(None), task_id, AGENT))

    def close(self) -> None:
        self.conn.close()


def raw_prefill(url: str, n: int) -> None:
    from psycopg2.extras import execute_values
    q = RawQueue(url)
    try:
        q.create()
        now = time.time()
        with q.conn:  # one transaction, like send_many
            execute_values(q.cur, "INSERT INTO tasks (sender, recipient, type, content,"
                           " priority, status, created_at) VALUES %s",
                           [("bench", AGENT, "job", json.dumps({"i": i}), 5, "pending", now)
                            for i in range(n)], page_size=1000)
    finally:
        q.close()


def raw_consume(q: RawQueue, work_s: float) -> int:
    done = 0
    while True:
        task = q.claim()
        if task is None:
            return done
        _sleep(work_s)
        q.complete(task[0])
        done += 1


def raw_count(url: str, query: str) -> int:
    import psycopg2
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute(query)
        return cur.fetchone()[0]
    finally:
        conn.close()


# -- procrastinate ----------------------------------------------------------------------
def procrastinate_app(url: str, work_s: float, sync: bool):
    import procrastinate
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    if sync:  # sync tasks run in a worker thread
        @app.task(name="job")
        def job(i):
            _sleep(work_s)
    else:
        @app.task(name="job")
        async def job(i):  # noqa: F811  (one of the two, by ``sync``)
            _sleep(work_s)
    return app


def procrastinate_prefill(url: str, n: int) -> None:
    async def go():
        app = procrastinate_app(url, 0.0, sync=False)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            job = app.tasks["job"]
            for start in range(0, n, 1000):
                await job.batch_defer_async(*({"i": i} for i in range(start, min(n, start + 1000))))
    asyncio.run(go())


def procrastinate_run(url: str, work_s: float, sync: bool, ready, go) -> int:
    async def main():
        app = procrastinate_app(url, work_s, sync)
        async with app.open_async():
            ready()
            await asyncio.get_running_loop().run_in_executor(None, go)
            await app.run_worker_async(concurrency=1, wait=False, install_signal_handlers=False)
        return -1  # counted in the database
    return asyncio.run(main())


def procrastinate_count(url: str) -> int:
    return raw_count(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")


# -- pgqueuer ---------------------------------------------------------------------------
def pgqueuer_prefill(url: str, n: int) -> None:
    async def go():
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries
        conn = await asyncpg.connect(url)
        try:
            queries = Queries(AsyncpgDriver(conn))
            await queries.install()
            for start in range(0, n, 1000):
                count = min(n, start + 1000) - start
                await queries.enqueue(["job"] * count,
                                      [json.dumps({"i": i}).encode()
                                       for i in range(start, start + count)], [0] * count)
        finally:
            await conn.close()
    asyncio.run(go())


def pgqueuer_run(url: str, work_s: float, batch: int, ready, go) -> int:
    async def main():
        import asyncpg
        from pgqueuer import PgQueuer
        from pgqueuer.types import QueueExecutionMode
        conn = await asyncpg.connect(url)
        pgq = PgQueuer.from_asyncpg_connection(conn)
        done = 0

        @pgq.entrypoint("job")
        async def job(job) -> None:
            nonlocal done
            _sleep(work_s)
            done += 1

        ready()
        await asyncio.get_running_loop().run_in_executor(None, go)
        await pgq.run(batch_size=batch, mode=QueueExecutionMode.drain)
        await conn.close()
        return done
    return asyncio.run(main())


def pgqueuer_count(url: str) -> int:
    return raw_count(url, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")


# -- the registry pg_bench.py runs --------------------------------------------------------
def _sync_runner(opener, consume):
    def run(url: str, work_s: float, ready, go) -> int:
        handle = opener(url)
        try:
            ready()
            go()
            return consume(handle, work_s)
        finally:
            handle.close()
    return run


class Kind:
    def __init__(self, label: str, prefill, run, count, backend: str = "postgresql"):
        self.label, self.prefill, self.run, self.count = label, prefill, run, count
        self.backend = backend


KINDS = {
    "coffee-team": Kind("coffee-team claim + mark_completed", ct_prefill,
                        _sync_runner(ct_open, ct_consume_separate), ct_count),
    "coffee-team cycle": Kind(f"coffee-team PostgreSQL agent cycle ({CT_CYCLE_LABEL})", ct_prefill,
                              _sync_runner(ct_open, ct_consume_cycle), ct_count),
    "coffee-team batch": Kind(f"coffee-team claim(limit={PGQUEUER_DEFAULT_BATCH}) + "
                              "mark_completed each", ct_prefill,
                              _sync_runner(ct_open, ct_consume_batch), ct_count),
    "coffee-team sqlite": Kind(f"coffee-team SQLite agent cycle ({CT_CYCLE_LABEL})", ct_prefill,
                               _sync_runner(ct_open, ct_consume_cycle), ct_count, "sqlite"),
    "psycopg2": Kind("raw psycopg2 (3 statements)", raw_prefill,
                     _sync_runner(RawQueue, raw_consume), lambda url: raw_count(
                         url, "SELECT count(*) FROM tasks WHERE status = 'completed'")),
    "procrastinate": Kind("procrastinate worker, async task", procrastinate_prefill,
                          lambda url, w, r, g: procrastinate_run(url, w, False, r, g),
                          procrastinate_count),
    "procrastinate sync": Kind("procrastinate worker, sync task", procrastinate_prefill,
                               lambda url, w, r, g: procrastinate_run(url, w, True, r, g),
                               procrastinate_count),
    "pgqueuer 1": Kind("pgqueuer batch_size=1", pgqueuer_prefill,
                       lambda url, w, r, g: pgqueuer_run(url, w, 1, r, g), pgqueuer_count),
    "pgqueuer": Kind(f"pgqueuer default batch ({PGQUEUER_DEFAULT_BATCH})", pgqueuer_prefill,
                     lambda url, w, r, g: pgqueuer_run(url, w, PGQUEUER_DEFAULT_BATCH, r, g),
                     pgqueuer_count),
}


def consumer_main(kind: str, url: str, work_s: float, ready, go, results) -> None:
    """One consumer process: set up, say ready, wait for the common start, drain, report."""
    try:
        done = KINDS[kind].run(url, work_s, ready.release, go.wait)
        results.put((done, time.time(), None))
    except BaseException as exc:  # the parent reports it instead of waiting forever
        results.put((0, time.time(), f"{type(exc).__name__}: {exc}"))
        raise
