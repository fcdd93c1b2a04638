"""The other queues queue_bench.py runs coffee-team against, each with send, send_many, take,
idle and close (see bench/README.md for what each does per task and at what durability)."""
from __future__ import annotations

import json
import pickle
import sqlite3
import time

try:
    from huey.storage import SqliteStorage
except ImportError:  # optional baseline
    SqliteStorage = None
try:
    import persistqueue
    from persistqueue.serializers import json as pq_json
except ImportError:  # optional baseline
    persistqueue = None
try:
    import litequeue
except ImportError:  # optional baseline
    litequeue = None

AGENT = "worker"


class PlainSqlite:
    """The least a durable SQLite work queue must do for the same logical work:
    the project's task columns and claim index (no other index, no
    backpressure, no dedupe, no metrics, no wake-ups), JSON content, a claim
    that takes a lease in one UPDATE ... RETURNING inside BEGIN IMMEDIATE, and
    a completion that stores the JSON result."""
    name = "sqlite3"
    schema = """
        CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, sender TEXT NOT NULL,
            recipient TEXT NOT NULL, type TEXT NOT NULL, content TEXT NOT NULL,
            priority INTEGER NOT NULL, created_at REAL NOT NULL, completed_at REAL,
            status TEXT NOT NULL, claimed_by TEXT, claimed_at REAL, lease_expires_at REAL,
            attempts INTEGER NOT NULL, dedupe_key TEXT, error TEXT, result TEXT);
        CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (recipient, status, priority, id);
    """
    insert = ("INSERT INTO tasks (sender, recipient, type, content, priority, created_at,"
              " dedupe_key, status, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0)")
    claim = ("UPDATE tasks SET status = 'in_progress', claimed_by = ?, claimed_at = ?,"
             " lease_expires_at = ?, attempts = attempts + 1 WHERE id IN"
             " (SELECT id FROM tasks WHERE recipient = ? AND status = 'pending'"
             " ORDER BY priority, id LIMIT 1) RETURNING id, sender, recipient, type, content,"
             " priority, attempts, created_at, lease_expires_at")
    complete = ("UPDATE tasks SET status = 'completed', completed_at = ?, result = ?"
                " WHERE id = ? AND status = 'in_progress'")

    def __init__(self, path: str, n: int):
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        self.conn.execute("PRAGMA journal_mode=wal")
        self.conn.execute("PRAGMA synchronous=normal")
        self.conn.executescript(self.schema)

    def send(self, content):  # one statement: its own (autocommit) transaction
        self.conn.execute(self.insert, ("bench", AGENT, "job", json.dumps(content), 5,
                                        time.time(), None))

    def send_many(self, contents):
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.insert, [("bench", AGENT, "job", json.dumps(c), 5, now, None)
                                            for c in contents])
        self.conn.execute("COMMIT")

    def take(self):
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        row = self.conn.execute(self.claim, (AGENT, now, now + 300.0, AGENT)).fetchone()
        self.conn.execute("COMMIT")
        if row is None:
            return None
        content = json.loads(row[4])
        self.conn.execute(self.complete, (time.time(), json.dumps(None), row[0]))
        return content

    def idle(self):
        time.sleep(0.001)

    def close(self):
        self.conn.close()


class Huey:
    name = "huey"

    def __init__(self, path: str, n: int):
        self.s = SqliteStorage(name="bench", filename=path)
        self.s.conn.execute("PRAGMA synchronous=normal")  # same durability as the others

    def send(self, content):
        self.s.enqueue(json.dumps(content).encode())

    def send_many(self, contents):  # huey has no batch enqueue
        for c in contents:
            self.send(c)

    def take(self):
        data = self.s.dequeue()  # huey deletes on dequeue: there is no completion step
        return None if data is None else json.loads(bytes(data))

    def idle(self):
        time.sleep(0.001)

    def close(self):
        self.s.close()


class HueyResult(Huey):
    """huey's cycle for a task that returns a value: after dequeue and execution the consumer
    stores the result (Huey.put_result -> storage.put_data(task id, pickled value)), as
    coffee-team stores every task's result."""
    name = "huey+result"
    consumes_only = True

    def __init__(self, path: str, n: int):
        super().__init__(path, n)
        self.taken = 0

    def take(self):
        data = self.s.dequeue()
        if data is None:
            return None
        self.taken += 1
        self.s.put_data(f"result-{self.taken}", pickle.dumps(None), is_result=True)
        return json.loads(bytes(data))


class PersistQueue:
    """persist-queue's SQLiteAckQueue: get() marks an item unacked, ack() completes it."""
    name = "persist-queue"

    def __init__(self, path: str, n: int):
        # auto_resume=False: a second consumer must not put the first one's items back
        self.q = persistqueue.SQLiteAckQueue(path + ".pq", auto_commit=True, auto_resume=False,
                                             multithreading=False, serializer=pq_json)

    def send(self, content):
        self.q.put(content)

    def send_many(self, contents):  # no batch enqueue in its API
        for c in contents:
            self.q.put(c)

    def take(self):
        try:
            item = self.q.get(block=False, raw=True)
        except persistqueue.Empty:
            return None
        self.q.ack(id=item["pqid"])
        return item["data"]

    def idle(self):
        time.sleep(0.001)

    def close(self):
        self.q._getter.close()

    @staticmethod
    def pending(path) -> bool:
        q = persistqueue.SQLiteAckQueue(path + ".pq", auto_resume=False, serializer=pq_json)
        return q.ready_count() + q.unack_count() > 0


class LiteQueue:
    """litequeue: pop() locks a message, done() completes it."""
    name = "litequeue"

    def __init__(self, path: str, n: int):
        self.q = litequeue.LiteQueue(path + ".lq")

    def send(self, content):
        self.q.put(json.dumps(content))

    def send_many(self, contents):  # no batch enqueue in its API
        for c in contents:
            self.send(c)

    def take(self):
        message = self.q.pop()
        if message is None:
            return None
        self.q.done(message.message_id)
        return json.loads(message.data)

    def idle(self):
        time.sleep(0.001)

    def close(self):
        self.q.close()

    @staticmethod
    def pending(path) -> bool:
        return litequeue.LiteQueue(path + ".lq").qsize() > 0
