"""complete_and_claim(): mark_completed then claim in one transaction, against every backend.

Mixed into the backend test classes next to QueueContract (which provides make_queue() on a
fresh database and a FakeClock). Each test states the behaviour of the two calls in a row,
which the fused call must match exactly.
"""
from __future__ import annotations

import threading
import time

import pytest

from coffee_team.errors import QueueFullError, UnstorableResult
from coffee_team.queue.factory import is_postgres
from coffee_team.queue.tables import SCHEMA_VERSION
from tests.queue_contract import deep_json, fresh_database


class FusedContract:
    def test_completes_records_the_metric_and_claims_the_next(self):
        q = self.make_queue()
        first, second = q.send("cli", "alice", "a"), q.send("cli", "alice", "b")
        q.claim("alice")
        self.clock.advance(2)
        completed, [task] = q.complete_and_claim(first, {"ok": 1}, agent="alice")
        assert completed is True
        assert (task.id, task.type, task.attempts) == (second, "b", 1)
        assert task.lease_expires_at == self.clock.now + q.lease_seconds
        [done] = q.get_messages("alice", status="completed")
        assert (done["id"], done["result"], done["completed_at"]) == (first, {"ok": 1},
                                                                     self.clock.now)
        [perf] = q.agent_performance()
        assert (perf["agent"], perf["count"]) == ("alice", 1)
        assert perf["avg_ms"] == pytest.approx(2000.0)
        stats = q.stats()["alice"]
        assert (stats["completed"], stats["in_progress"], stats["pending"]) == (1, 1, 0)

    def test_the_last_task_claims_nothing(self):
        q = self.make_queue()
        only = q.send("cli", "alice", "a")
        q.claim("alice")
        assert q.complete_and_claim(only, agent="alice") == (True, [])
        assert q.complete_and_claim(only, agent="alice") == (False, [])

    def test_a_task_not_held_is_not_completed_but_the_claim_still_happens(self):
        """As mark_completed(agent=...) then claim(): the agent asked for more work either
        way (its task was cancelled or taken over meanwhile)."""
        q = self.make_queue()
        held = q.send("cli", "alice", "a")
        q.claim("alice")
        nxt = q.send("cli", "alice", "b")
        assert q.complete_and_claim(held, {"x": 1}, agent="mallory") == (False, [])
        q.cancel_task(held)
        completed, [task] = q.complete_and_claim(held, {"x": 1}, agent="alice")
        assert completed is False and task.id == nxt and task.recipient == "alice"
        assert q.get_task(held)["status"] == "cancelled"
        assert q.get_task(held)["result"] is None
        assert q.agent_performance() == []
        q.cancel_task(nxt)
        assert q.complete_and_claim(nxt, agent="alice") == (False, [])

    def test_a_held_task_requeued_meanwhile_and_next_in_line_is_claimed_not_completed(self):
        """SQLite completes and claims in one UPDATE of both rows, told apart by their status
        before it: a task pending again (its agent restarted) is claimed, as claim() would."""
        q = self.make_queue()
        held = q.send("cli", "alice", "a")
        q.claim("alice")
        assert q.requeue_agent("alice") == 1
        completed, [task] = q.complete_and_claim(held, {"x": 1}, agent="alice")
        assert completed is False and (task.id, task.attempts) == (held, 2)
        row = q.get_task(held)
        assert (row["status"], row["result"], row["completed_at"]) == ("in_progress", None, None)
        assert q.agent_performance() == [] and q.stats()["alice"]["completed"] == 0

    def test_a_held_task_past_its_lease_is_completed_and_the_next_claimed(self):
        """The claim's guard (no expired lease of the agent's) sees the held task itself in the
        one-statement form: the completion stands and the next task is claimed all the same."""
        q = self.make_queue(lease_seconds=10)
        a, b = q.send("cli", "alice", "a"), q.send("cli", "alice", "b")
        q.claim("alice")
        self.clock.advance(11)  # a's own lease ran out; nothing released it yet
        completed, [task] = q.complete_and_claim(a, {"ok": 1}, agent="alice")
        assert completed is True and (task.id, task.attempts) == (b, 1)
        assert (q.get_task(a)["status"], q.get_task(a)["result"]) == ("completed", {"ok": 1})
        assert [p["count"] for p in q.agent_performance()] == [1]
        assert q.stats()["alice"]["completed"] == 1

    def test_a_completion_wakes_the_waiter_of_a_task_it_released(self):
        consumer = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        producer = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        parent = producer.send("cli", "alice", "p")
        producer.send("cli", "bob", "c", after=[parent])
        producer.claim("alice")
        assert consumer.wait("bob", timeout=0) is False  # binds; the child waits on its parent
        timer = threading.Timer(0.05, producer.complete_and_claim, (parent,), {"agent": "alice"})
        timer.start()
        started = time.monotonic()
        assert consumer.wait("bob", timeout=5) is True
        timer.join()
        assert time.monotonic() - started < 2  # woken, not timed out

    def test_follow_ups_are_written_with_the_completion_and_claimable_at_once(self):
        q = self.make_queue()
        work = q.send("cli", "alice", "work")
        q.claim("alice")
        completed, [mine] = q.complete_and_claim(work, agent="alice", follow_ups=[
            {"sender": "alice", "recipient": "bob", "type": "next", "content": {"n": 1}},
            {"sender": "alice", "recipient": "alice", "type": "again", "priority": 1}])
        assert completed is True and mine.type == "again" and mine.sender == "alice"
        [follow] = q.get_messages("bob")
        assert follow["content"] == {"n": 1}
        # a stale completion sends nothing (but claims, as claim() would)
        assert q.complete_and_claim(work, agent="alice", follow_ups=[
            {"sender": "alice", "recipient": "bob", "type": "next"}]) == (False, [])
        assert len(q.get_messages("bob")) == 1

    def test_a_follow_up_past_max_queue_size_rolls_everything_back(self):
        q = self.make_queue(max_queue_size=1)
        q.send("cli", "bob", "full")
        work = q.send("cli", "alice", "work")
        q.claim("alice")
        q.send("cli", "alice", "next")
        with pytest.raises(Exception, match="max_queue_size"):
            q.complete_and_claim(work, agent="alice", follow_ups=[
                {"sender": "alice", "recipient": "bob", "type": "t"}])
        assert q.get_task(work)["status"] == "in_progress"
        assert [t["status"] for t in q.get_messages("alice", "pending")] == ["pending"]

    def test_unstorable_result_changes_nothing(self):
        q = self.make_queue()
        work, nxt = q.send("cli", "alice", "w"), q.send("cli", "alice", "n")
        q.claim("alice")
        with pytest.raises(UnstorableResult):
            q.complete_and_claim(work, object(), agent="alice")
        assert q.get_task(work)["status"] == "in_progress"
        assert q.get_task(nxt)["status"] == "pending"

    def test_limit_claims_a_batch_in_priority_order(self):
        q = self.make_queue()
        work = q.send("cli", "alice", "w", priority=0)
        q.claim("alice")
        ids = [q.send("cli", "alice", "t", priority=p) for p in (7, 3, 5, 3)]
        completed, tasks = q.complete_and_claim(work, agent="alice", limit=3)
        assert completed and [t.id for t in tasks] == [ids[1], ids[3], ids[2]]
        assert [t.id for t in q.claim("alice", limit=5)] == [ids[0]]

    def test_an_expired_lease_is_released_and_claimed_first(self):
        q = self.make_queue(lease_seconds=10)
        a, b = q.send("cli", "alice", "a"), q.send("cli", "alice", "b")
        later = q.send("cli", "alice", "c")
        assert [t.id for t in q.claim("alice", limit=2)] == [a, b]
        self.clock.advance(11)  # both leases expired; neither released yet
        completed, [again] = q.complete_and_claim(a, agent="alice")
        assert completed is True
        assert (again.id, again.attempts) == (b, 2)  # released, then ahead of `later`
        assert q.get_task(later)["status"] == "pending"

    def test_an_expired_lease_out_of_attempts_fails_its_task(self):
        q = self.make_queue(lease_seconds=10, max_attempts=1)
        a, b = q.send("cli", "alice", "a"), q.send("cli", "alice", "b")
        q.claim("alice", limit=2)
        self.clock.advance(11)
        assert q.complete_and_claim(a, agent="alice") == (True, [])
        failed = q.get_task(b)
        assert (failed["status"], failed["error"]) == ("failed", "lease expired after 1 attempts")
        assert q.stats()["alice"]["failed"] == 1

    def test_a_paused_agent_completes_but_claims_nothing(self):
        q = self.make_queue()
        work, nxt = q.send("cli", "alice", "w"), q.send("cli", "alice", "n")
        q.claim("alice")
        q.pause_agent("alice", "maintenance")
        assert q.complete_and_claim(work, agent="alice") == (True, [])
        assert q.get_task(nxt)["status"] == "pending"
        q.resume_agent("alice")
        assert [t.id for t in q.claim("alice")] == [nxt]

    def test_a_pause_that_ran_out_does_not_hold_the_claim(self):
        q = self.make_queue()
        work, nxt = q.send("cli", "alice", "w"), q.send("cli", "alice", "n")
        q.claim("alice")
        q.pause_agent("alice", "short", until=self.clock.now + 5)
        self.clock.advance(6)
        completed, [task] = q.complete_and_claim(work, agent="alice")
        assert completed and task.id == nxt

    def test_not_yet_due_tasks_are_not_claimed(self):
        q = self.make_queue()
        work = q.send("cli", "alice", "w")
        q.claim("alice")
        q.send("cli", "alice", "later", delay=30)
        assert q.complete_and_claim(work, agent="alice") == (True, [])

    def test_unreadable_content_fails_its_task_and_the_next_is_claimed(self):
        q = self.make_queue()
        work = q.send("cli", "alice", "w", priority=0)
        q.claim("alice")
        now = self.clock()
        q.backend.insert_tasks(["old", "alice", "t", deep_json(992), 1, now, None, now, None], 1)
        fine = q.send("cli", "alice", "t", {"ok": 1}, priority=2)
        completed, [task] = q.complete_and_claim(work, agent="alice")
        assert completed and (task.id, task.content) == (fine, {"ok": 1})
        assert q.stats()["alice"]["failed"] == 1 and q.stats()["alice"]["completed"] == 1

    def test_claims_continue_the_senders_trace(self):
        q = self.make_queue()
        work = q.send("cli", "alice", "w")
        q.claim("alice")
        parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        now = self.clock()
        q.backend.insert_tasks(["cli", "alice", "t", "{}", 5, now, None, now, parent], 1)
        _, [task] = q.complete_and_claim(work, agent="alice")
        assert task.traceparent == parent

    def test_two_agents_never_get_the_same_task(self):
        q, other = self.make_queue(), self.make_queue()
        ids = [q.send("cli", "alice", "t") for _ in range(6)]
        first, second = q.claim("alice")[0], other.claim("alice")[0]
        seen = {first.id, second.id}
        for _ in range(2):
            _, [a] = q.complete_and_claim(first.id, agent="alice")
            _, [b] = other.complete_and_claim(second.id, agent="alice")
            first, second = a, b
            seen |= {a.id, b.id}
        assert seen == set(ids) and len(seen) == 6
        assert q.stats()["alice"]["completed"] == 4

    # -- schema 8 -------------------------------------------------------------------------
    @fresh_database
    def test_a_version_7_database_keeps_its_metrics_with_the_index_only_on_postgres(self):
        q = self.make_queue()
        work = q.send("cli", "alice", "t")
        q.claim("alice")
        q.mark_completed(work)
        pg = is_postgres(q.db)
        with q.db.atomic():  # what version 7 had: the index on both backends
            if pg:
                q.db.execute_sql("DROP INDEX metrics_timestamp")
            q.db.execute_sql("CREATE INDEX metrics_timestamp ON metrics (timestamp)")
            q.db.execute_sql("UPDATE schema_version SET version = 7")
        q.close()
        upgraded = self.make_queue()
        assert upgraded.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)] and SCHEMA_VERSION >= 8
        indexes = {name for (name,) in upgraded.backend.fetchall(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'metrics'" if pg else
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'metrics'")}
        assert ("metrics_timestamp" in indexes) is pg
        assert [p["count"] for p in upgraded.agent_performance()] == [1]
        assert [row[1:3] for row in upgraded.task_durations_after(0)] == [("alice", "t")]

    # -- schema 16 ------------------------------------------------------------------------
    @fresh_database
    def test_a_version_13_database_gets_the_triggers_of_schema_16(self):
        """SQLite's count and dependency triggers of schemas 3 and 10 fired on status (every
        claim ran them); schema 16 makes them anew on completed_at, with the metrics row and
        the pending bound folded in. Counts, metrics and bounds go on from where they were."""
        q = self.make_queue(max_queue_size=3)
        done = q.send("cli", "alice", "t")
        q.claim("alice")
        q.mark_completed(done)
        pg = is_postgres(q.db)
        with q.db.atomic():  # what version 13 had
            if not pg:
                for statement in (*_V13_SQLITE_TRIGGER_NAMES, *_V13_SQLITE_TRIGGERS):
                    q.db.execute_sql(statement)
            q.db.execute_sql("UPDATE schema_version SET version = 13")
        q.close()
        up = self.make_queue(max_queue_size=3)
        assert up.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)] and SCHEMA_VERSION >= 16
        if not pg:
            triggers = dict(up.backend.fetchall(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
            assert {"tasks_count_update", "tasks_dependents", "tasks_count_insert"} <= set(
                triggers)
            for name in ("tasks_count_update", "tasks_dependents"):
                assert "UPDATE OF completed_at" in triggers[name]
        parent, child = up.send("cli", "alice", "p"), None
        child = up.send("cli", "bob", "c", after=[parent])
        up.claim("alice")
        self.clock.advance(1)
        assert up.mark_completed(parent, {"r": 1}, agent="alice")
        assert up.get_task(child)["status"] == "pending"  # released by its parent's end
        failed = up.send("cli", "alice", "f")
        up.claim("alice")
        up.mark_failed(failed, "boom", permanent=True)
        assert up.retry_task(failed)  # failed -> pending: counted out of failed again
        stats = up.stats()
        assert (stats["alice"]["completed"], stats["alice"]["failed"]) == (2, 0)
        assert [p["count"] for p in up.agent_performance()] == [3]  # 2 completions, 1 failure
        up.send("cli", "alice", "x")
        with pytest.raises(QueueFullError):  # failed-then-retried + x + y: the bound holds
            up.send_many([{"sender": "cli", "recipient": "alice", "type": "y"}] * 2)

    @fresh_database
    def test_a_version_17_database_gets_the_completion_trigger_of_schema_18(self):
        """Schema 18 gives SQLite's completions a count-and-metrics trigger of their own: an
        upgraded database counts each end once, by one trigger or the other."""
        q = self.make_queue()
        done = q.send("cli", "alice", "t")
        q.claim("alice")
        q.mark_completed(done)
        pg = is_postgres(q.db)
        with q.db.atomic():  # what version 17 had
            if not pg:
                q.db.execute_sql("DROP TRIGGER tasks_completed")
                q.db.execute_sql("DROP TRIGGER tasks_count_update")
                q.db.execute_sql(_V17_SQLITE_COUNT_TRIGGER)
            q.db.execute_sql("UPDATE schema_version SET version = 17")
        q.close()
        up = self.make_queue()
        assert up.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)] and SCHEMA_VERSION >= 18
        if not pg:
            names = {n for (n,) in up.backend.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
            assert {"tasks_completed", "tasks_count_update"} <= names
        second, failed = up.send("cli", "alice", "a"), up.send("cli", "alice", "b")
        up.claim("alice")
        completed, [held] = up.complete_and_claim(second, agent="alice")
        assert completed and held.id == failed
        up.mark_failed(failed, "boom", permanent=True)
        assert (up.stats()["alice"]["completed"], up.stats()["alice"]["failed"]) == (2, 1)
        assert up.retry_task(failed)  # failed -> pending: counted out of failed again
        assert (up.stats()["alice"]["completed"], up.stats()["alice"]["failed"]) == (2, 0)
        assert [p["count"] for p in up.agent_performance()] == [3]  # 2 completions, 1 failure

    def test_an_error_after_the_commit_keeps_the_completion_and_claims_nothing(self,
                                                                              monkeypatch):
        """Once the completion is committed, a database error while reading the claimed rows
        must not reach a caller that retries the whole call (the task would no longer be held
        and its stored result reported lost): the completion stands, the next claim() goes on."""
        import sqlite3
        q = self.make_queue()
        first, second = q.send("cli", "alice", "a"), q.send("cli", "alice", "b")
        q.claim("alice")

        def sick(rows, agent):
            raise sqlite3.OperationalError("disk I/O error")
        monkeypatch.setattr(q, "_claimed_tasks", sick)
        assert q.complete_and_claim(first, {"ok": 1}, agent="alice") == (True, [])
        assert q.get_task(first)["status"] == "completed"
        assert q.get_task(first)["result"] == {"ok": 1}
        assert q.get_task(second)["status"] in ("pending", "in_progress")


# Version 13's SQLite triggers (sql_schema before schema 16), fired on every status change.
_V13_SQLITE_TRIGGER_NAMES = ("DROP TRIGGER tasks_count_update", "DROP TRIGGER tasks_dependents",
                             "DROP TRIGGER tasks_count_insert")
_FINISHED = "('completed', 'failed', 'cancelled')"
_V13_SQLITE_TRIGGERS = (
    "CREATE TRIGGER tasks_count_update AFTER UPDATE OF status ON tasks"
    f" WHEN OLD.status <> NEW.status AND (OLD.status IN {_FINISHED}"
    f" OR NEW.status IN {_FINISHED}) BEGIN"
    " INSERT OR IGNORE INTO task_counts (recipient, status, n)"
    f" SELECT NEW.recipient, NEW.status, 0 WHERE NEW.status IN {_FINISHED};"
    " UPDATE task_counts SET n = n + 1 WHERE recipient = NEW.recipient AND status = NEW.status;"
    " UPDATE task_counts SET n = n - 1 WHERE recipient = OLD.recipient AND status = OLD.status;"
    " END",
    "CREATE TRIGGER tasks_dependents AFTER UPDATE OF status ON tasks WHEN NEW.dependents > 0"
    f" AND OLD.status NOT IN {_FINISHED} AND NEW.status IN {_FINISHED} BEGIN"
    " UPDATE tasks SET waiting_on = waiting_on - 1,"
    " status = CASE WHEN waiting_on <= 1 THEN 'pending' ELSE 'waiting' END"
    " WHERE status = 'waiting' AND id IN (SELECT child FROM task_deps WHERE parent = NEW.id"
    " AND resolved = 0 AND NEW.status = 'completed');"
    " UPDATE task_deps SET resolved = 1 WHERE parent = NEW.id AND resolved = 0; END",
)
# Version 17's SQLite count trigger (sql_schema before schema 18): every end and retry.
_V17_SQLITE_COUNT_TRIGGER = (
    "CREATE TRIGGER tasks_count_update AFTER UPDATE OF completed_at ON tasks"
    f" WHEN OLD.status <> NEW.status AND (OLD.status IN {_FINISHED}"
    f" OR NEW.status IN {_FINISHED}) BEGIN"
    " INSERT INTO task_counts (recipient, status, n) SELECT NEW.recipient, NEW.status, 1"
    f" WHERE NEW.status IN {_FINISHED} ON CONFLICT (recipient, status) DO UPDATE SET n = n + 1;"
    f" UPDATE task_counts SET n = n - 1 WHERE OLD.status IN {_FINISHED}"
    " AND recipient = OLD.recipient AND status = OLD.status;"
    " INSERT INTO metrics (agent, task_type, duration_ms, timestamp) SELECT NEW.claimed_by,"
    " NEW.type, MAX(0.0, (NEW.completed_at - NEW.claimed_at) * 1000.0), NEW.completed_at"
    " WHERE OLD.status = 'in_progress' AND NEW.status = 'completed';"
    " END")
