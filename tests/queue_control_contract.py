"""Contract tests for delays, retries, task control, pause and escalation (i13b), mixed into
QueueContract so they run against SQLite and PostgreSQL alike, on a FakeClock."""
from __future__ import annotations

import threading
import time

import pytest

from coffee_team.errors import ContentError, QueueFullError, TaskNotFound, TaskStateError
from coffee_team.queue import MessageQueue
from coffee_team.queue.tables import SCHEMA_VERSION
from coffee_team.taskstate import RetryPolicy
from tests.queue_contract import fresh_database

# A version-1 tasks table as coffee-team wrote it before schema 2 ({pk}/{dbl} per dialect).
V1_DDL = (
    "CREATE TABLE tasks (id {pk}, sender VARCHAR(100) NOT NULL, recipient VARCHAR(100) NOT NULL,"
    " type VARCHAR(100) NOT NULL, content TEXT NOT NULL, priority INTEGER NOT NULL,"
    " created_at {dbl} NOT NULL, completed_at {dbl}, status VARCHAR(20) NOT NULL"
    " CHECK (status IN ('pending', 'in_progress', 'completed', 'failed')),"
    " claimed_by VARCHAR(100), claimed_at {dbl}, lease_expires_at {dbl},"
    " attempts INTEGER NOT NULL, dedupe_key VARCHAR(200), error TEXT, result TEXT)",
    "CREATE INDEX tasks_recipient_status_priority_id ON tasks (recipient, status, priority, id)",
    "CREATE UNIQUE INDEX tasks_live_dedupe_key ON tasks (recipient, dedupe_key)"
    " WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'in_progress')",
    "CREATE TABLE queue_depth (recipient VARCHAR(100) PRIMARY KEY, pending_bound INTEGER NOT NULL)",
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at {dbl} NOT NULL)",
    "INSERT INTO schema_version VALUES (1, 0)",
    "INSERT INTO tasks (sender, recipient, type, content, priority, created_at, status, attempts)"
    " VALUES ('cli', 'alice', 'old', '{{}}', 5, 100, 'pending', 0),"
    " ('cli', 'alice', 'old', '{{}}', 5, 100, 'failed', 3)",
    "INSERT INTO queue_depth VALUES ('alice', 1)",
)

# A version-2 restart_state (keyed by agent alone) holding one given-up agent.
V2_RESTART_STATE_DDL = (
    "DROP TABLE restart_state",
    "CREATE TABLE restart_state (agent VARCHAR(100) NOT NULL PRIMARY KEY,"
    " attempts INTEGER NOT NULL, next_restart_at {dbl}, given_up {bool} NOT NULL,"
    " running_since {dbl}, last_crash_at {dbl}, hang_restart {bool} NOT NULL)",
    "INSERT INTO restart_state VALUES ('alice', 3, NULL, {true}, NULL, 50, {false})",
    "DELETE FROM schema_version",
    "INSERT INTO schema_version VALUES (2, 0)",
)


def flaky(attempts=3, backoff=2.0, **kw) -> dict:
    return {"alice": RetryPolicy(attempts=attempts, backoff=backoff, **kw)}


class ControlContract:
    def depth(self, q: MessageQueue, recipient: str) -> int:
        row = q.backend.fetchone("SELECT pending_bound FROM queue_depth WHERE recipient = ?",
                                 (recipient,))
        return row[0] if row else 0

    def pending(self, q: MessageQueue, recipient: str) -> int:
        return len(q.get_messages(recipient))

    # -- delay / run_after --------------------------------------------------
    def test_delayed_task_is_not_claimed_before_it_is_due(self):
        q = self.make_queue()
        late = q.send("cli", "alice", "t", delay=30)
        assert q.claim("alice") == [] and not q.has_work("alice")
        self.clock.advance(29.9)
        assert q.claim("alice") == []
        self.clock.advance(0.1)
        assert [t.id for t in q.claim("alice")] == [late]

    def test_due_order_is_priority_then_fifo_among_due_tasks(self):
        q = self.make_queue()
        urgent_later = q.send("cli", "alice", "t", priority=0, delay=60)
        normal = q.send("cli", "alice", "t", priority=5)
        low = q.send("cli", "alice", "t", priority=9, delay=10)
        assert [t.id for t in q.claim("alice", limit=5)] == [normal]
        self.clock.advance(10)
        assert [t.id for t in q.claim("alice", limit=5)] == [low]
        self.clock.advance(50)
        assert [t.id for t in q.claim("alice", limit=5)] == [urgent_later]

    @pytest.mark.parametrize("delay", [-1, float("nan"), float("inf"), 31 * 86400, "5", True])
    def test_bad_delays_are_refused(self, delay):
        q = self.make_queue()
        with pytest.raises(ContentError, match="delay must be"):
            q.send("cli", "alice", "t", delay=delay)
        assert q.list_tasks() == []

    def test_send_many_takes_a_delay_per_message(self):
        q = self.make_queue()
        q.send_many([dict(sender="cli", recipient="alice", type="t", delay=5),
                     dict(sender="cli", recipient="alice", type="t")])
        assert len(q.claim("alice", limit=5)) == 1
        self.clock.advance(5)
        assert len(q.claim("alice", limit=5)) == 1

    def test_wait_is_bounded_by_the_next_due_time(self):
        q = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        q.send("cli", "alice", "t", delay=0.3)
        started = time.monotonic()
        assert q.wait("alice", timeout=5.0) is True
        assert 0.2 <= time.monotonic() - started < 2.0
        assert len(q.claim("alice")) == 1

    # -- retries ------------------------------------------------------------
    def test_failures_retry_with_exponential_backoff_then_fail_keeping_every_error(self):
        q = self.make_queue(retry=flaky(attempts=3, backoff=2.0), jitter=lambda: 0.0)
        task_id = q.send("cli", "alice", "t")
        due_times = []
        for attempt in (1, 2, 3):
            [task] = q.claim("alice")
            assert task.id == task_id
            assert q.mark_failed(task.id, f"boom {attempt}", agent="alice")
            row = q.get_task(task_id)
            due_times.append(row["run_after"])
            if attempt < 3:
                assert row["status"] == "pending" and row["failures"] == attempt
                assert q.claim("alice") == []  # not before the backoff
                self.clock.advance(row["run_after"] - self.clock())
        start = due_times[0] - 2.0
        assert [due_times[0] - start, due_times[1] - due_times[0]] == [2.0, 2.0 + 2.0]
        row = q.get_task(task_id)
        assert row["status"] == "failed" and row["error"] == "boom 3" and row["failures"] == 3
        assert [e["error"] for e in row["errors"]] == ["boom 1", "boom 2", "boom 3"]
        assert [e["attempt"] for e in row["errors"]] == [1, 2, 3]

    def test_backoff_is_capped_and_jitter_is_small(self):
        q = self.make_queue(retry=flaky(attempts=10, backoff=10.0, max_backoff=25.0),
                            jitter=lambda: 1.0)
        task_id = q.send("cli", "alice", "t")
        gaps = []
        for _ in range(4):
            [task] = q.claim("alice")
            q.mark_failed(task.id, "x")
            gap = q.get_task(task_id)["run_after"] - self.clock()
            gaps.append(gap)
            self.clock.advance(gap)
        assert gaps == [11.0, 22.0, 25.0, 25.0]

    def test_only_matching_errors_are_retried(self):
        q = self.make_queue(retry=flaky(on=(75, "rate limit")), jitter=lambda: 0.0)
        ids = [q.send("cli", "alice", "t") for _ in range(3)]
        tasks = q.claim("alice", limit=3)
        q.mark_failed(tasks[0].id, "worker exited with 75: busy")
        q.mark_failed(tasks[1].id, "HandlerError: rate limit hit")
        q.mark_failed(tasks[2].id, "worker exited with 1: syntax error")
        assert [q.get_task(i)["status"] for i in ids] == ["pending", "pending", "failed"]

    def test_without_a_policy_a_failure_is_final(self):
        q = self.make_queue()
        q.send("cli", "alice", "t")
        [task] = q.claim("alice")
        assert q.mark_failed(task.id, "nope")
        assert q.get_task(task.id)["status"] == "failed"
        assert not q.mark_failed(task.id, "again")  # not in progress any more

    def test_crash_redelivery_keeps_its_own_max_attempts(self):
        q = self.make_queue(retry=flaky(attempts=5, backoff=1.0), max_attempts=2,
                            jitter=lambda: 0.0)
        task_id = q.send("cli", "alice", "t")
        for _ in range(3):  # three handler failures do not use up the crash allowance
            [task] = q.claim("alice")
            q.mark_failed(task.id, "x")
            self.clock.advance(100)
        q.claim("alice")
        assert q.requeue_agent("alice") == 1  # crash 1 of 2: back to pending
        q.claim("alice")
        assert q.requeue_agent("alice") == 0  # crash 2 of 2: failed
        assert q.get_task(task_id)["status"] == "failed"

    def test_retry_puts_the_task_back_under_the_depth_bound(self):
        q = self.make_queue(retry=flaky(), jitter=lambda: 0.0, max_queue_size=2)
        q.send("cli", "alice", "t")
        [task] = q.claim("alice")
        q.send("cli", "alice", "t")
        q.send("cli", "alice", "t")
        q.mark_failed(task.id, "x")  # a retry is never refused: nothing may be lost
        assert self.pending(q, "alice") == 3 <= self.depth(q, "alice")
        with pytest.raises(QueueFullError):
            q.send("cli", "alice", "t")

    # -- cancel / retry -----------------------------------------------------
    def test_cancel_pending_and_in_progress(self):
        q = self.make_queue()
        waiting = q.send("cli", "alice", "t")
        running = q.send("cli", "alice", "t", priority=0)
        [task] = q.claim("alice")
        assert task.id == running
        assert q.cancel_task(waiting) == "pending"
        assert q.cancel_task(running) == "in_progress"
        assert q.claim("alice") == []
        # the holder's late outcome is a no-op
        assert not q.mark_completed(running, {"late": True}, agent="alice")
        assert not q.mark_failed(running, "late", agent="alice")
        row = q.get_task(running)
        assert row["status"] == "cancelled" and row["result"] is None
        assert row["claimed_by"] == "alice" and row["completed_at"] == self.clock()
        assert q.stats()["alice"]["cancelled"] == 2

    def test_cancel_and_retry_keep_the_depth_bound_exact(self):
        q = self.make_queue(max_queue_size=3)
        ids = [q.send("cli", "alice", "t") for _ in range(3)]
        q.cancel_task(ids[0])
        assert self.depth(q, "alice") == self.pending(q, "alice") == 2
        q.send("cli", "alice", "t")  # the cancelled one made room
        with pytest.raises(QueueFullError):
            q.retry_task(ids[0])
        assert q.get_task(ids[0])["status"] == "cancelled"
        q.cancel_task(ids[1])
        assert q.retry_task(ids[0]) == "cancelled"
        assert self.depth(q, "alice") == self.pending(q, "alice") == 3

    def test_retry_resets_attempts_and_is_claimable_now(self):
        q = self.make_queue(max_attempts=1)
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        q.mark_failed(task_id, "bad")
        assert q.retry_task(task_id) == "failed"
        row = q.get_task(task_id)
        assert (row["status"], row["attempts"], row["failures"], row["error"]) == \
            ("pending", 0, 0, None)
        assert [e["error"] for e in row["errors"]] == ["bad"]  # the history stays
        [task] = q.claim("alice")
        assert task.id == task_id and task.attempts == 1

    @pytest.mark.parametrize("state", ["in_progress", "completed"])
    def test_retry_refuses_running_or_completed_tasks(self, state):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        if state == "completed":
            q.mark_completed(task_id)
        with pytest.raises(TaskStateError, match=f"cannot retry a task that is {state}"):
            q.retry_task(task_id)
        assert q.get_task(task_id)["status"] == state

    def test_retry_releases_a_delayed_pending_task_and_refuses_a_due_one(self):
        q = self.make_queue()
        delayed = q.send("cli", "alice", "later", delay=3600)
        due = q.send("cli", "alice", "now")
        with pytest.raises(TaskStateError, match=f"task {due} is pending and due already"):
            q.retry_task(due)
        assert [t.id for t in q.claim("alice", 5)] == [due]
        assert q.retry_task(delayed) == "pending"
        [task] = q.claim("alice")
        assert task.id == delayed and task.attempts == 1 and task.type == "later"

    def test_retry_releases_a_backed_off_task_as_a_failed_one(self):
        q = self.make_queue(retry=flaky(3, backoff=3600))
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        q.mark_failed(task_id, "flaky")  # back to pending, due in an hour
        assert q.claim("alice") == []
        depth = self.depth(q, "alice")
        assert q.retry_task(task_id) == "pending"
        row = q.get_task(task_id)
        assert (row["status"], row["attempts"], row["failures"]) == ("pending", 0, 0)
        assert [e["error"] for e in row["errors"]] == ["flaky"]  # the history stays
        assert self.depth(q, "alice") == depth  # pending already: not counted again
        assert [t.id for t in q.claim("alice")] == [task_id]

    def test_bring_back_moves_tasks_stamped_while_the_clock_was_ahead(self):
        """The clock ran 2 h ahead while tasks were sent, then went back: they would wait
        for it to catch up (2 h) and their age would read negative."""
        q = self.make_queue()
        before = q.send("cli", "alice", "before", delay=600)  # sent on the right clock
        real_now = self.clock()
        self.clock.jump(7200)
        ahead = q.send("cli", "alice", "ahead")
        ahead_delayed = q.send("cli", "alice", "ahead+60", delay=60)
        self.clock.jump(-7200)
        assert q.claim("alice") == []  # stranded: due 2 h from now
        assert q.bring_back() == 2
        rows = {r["id"]: r for r in q.list_tasks(agent="alice", limit=10)}
        assert rows[ahead]["created_at"] == rows[ahead]["run_after"] == real_now
        assert rows[ahead_delayed]["run_after"] == real_now + 60  # its delay kept
        assert rows[before]["run_after"] == real_now + 600  # not stamped ahead: untouched
        assert [t.id for t in q.claim("alice", 5)] == [ahead]
        assert q.bring_back() == 0  # nothing left in the future

    @pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
    def test_cancel_refuses_finished_tasks(self, state):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        if state == "cancelled":
            q.cancel_task(task_id)
        else:
            q.claim("alice")
            (q.mark_completed(task_id) if state == "completed" else q.mark_failed(task_id, "x"))
        with pytest.raises(TaskStateError, match=f"cannot cancel a task that is {state}"):
            q.cancel_task(task_id)

    def test_unknown_task_id(self):
        q = self.make_queue()
        for action in (q.get_task, q.cancel_task, q.retry_task):
            with pytest.raises(TaskNotFound, match="no task with id 999"):
                action(999)

    def test_retry_refuses_a_dedupe_key_that_is_live_again(self):
        q = self.make_queue()
        first = q.send("cli", "alice", "t", dedupe_key="k")
        q.cancel_task(first)
        q.send("cli", "alice", "t", dedupe_key="k")
        with pytest.raises(TaskStateError, match="dedupe_key"):
            q.retry_task(first)

    def test_concurrent_cancel_and_complete_leave_one_state(self):
        q = self.make_queue()
        other = self.make_queue()
        ids = [q.send("cli", "alice", "t") for _ in range(20)]
        tasks = q.claim("alice", limit=20)
        outcomes = {}

        def cancel_all():
            for i in ids:
                try:
                    other.cancel_task(i)
                    outcomes.setdefault(i, []).append("cancelled")
                except TaskStateError:
                    pass

        thread = threading.Thread(target=cancel_all)
        thread.start()
        for task in tasks:
            if q.mark_completed(task.id, agent="alice"):
                outcomes.setdefault(task.id, []).append("completed")
        thread.join()
        assert all(len(v) == 1 for v in outcomes.values()) and len(outcomes) == 20
        assert {i: q.get_task(i)["status"] for i in ids} == {i: v[0] for i, v in outcomes.items()}

    # -- failed for good: one notice each, and the agent's last failure and count ----------
    def failure_notes(self, q: MessageQueue) -> list[tuple[str, str, str]]:
        return [(n["level"], n["agent"], n["message"]) for n in q.notifications()]

    def test_a_task_that_fails_for_good_raises_one_silent_warning_naming_it(self):
        q = self.make_queue(retry=flaky(attempts=2, backoff=1.0), jitter=lambda: 0.0)
        task_id = q.send("cli", "alice", "review", {"x": 1})
        [task] = q.claim("alice")
        q.mark_failed(task.id, "boom 1", agent="alice")
        assert q.notifications() == [] and q.recent_failures() == {}  # a retry is left
        self.clock.advance(5)
        [task] = q.claim("alice")
        assert q.mark_failed(task.id, "timed out after 600s", agent="alice")
        assert not q.mark_failed(task.id, "again", agent="alice")  # once only
        [note] = q.notifications()
        assert (note["level"], note["agent"], note["sound"]) == ("WARNING", "alice", False)
        assert note["title"] == f"alice: task #{task_id} (review) failed"
        assert note["message"].endswith(": timed out after 600s")
        assert q.recent_failures() == {"alice": {
            "last_failure": {"task_id": task_id, "type": "review",
                             "error": "timed out after 600s", "at": self.clock()},
            "failed_24h": 1}}

    def test_a_permanent_error_fails_at_once_despite_the_retry_policy(self):
        q = self.make_queue(retry=flaky(attempts=3))
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        assert q.mark_failed(task_id, "prompt template: no field", agent="alice", permanent=True)
        row = q.get_task(task_id)
        assert (row["status"], row["failures"]) == ("failed", 1)
        assert len(q.notifications()) == 1

    def test_leases_and_restarts_past_max_attempts_notify_too(self):
        q = self.make_queue(lease_seconds=10, max_attempts=1)
        expired = q.send("cli", "alice", "lease")
        q.claim("alice")
        self.clock.advance(11)
        assert q.claim("alice") == []  # the release fails it: out of attempts
        crashed = q.send("cli", "bob", "crash")
        q.claim("bob")
        assert q.requeue_agent("bob") == 0
        assert self.failure_notes(q) == [
            ("WARNING", "alice", f"alice: task #{expired} (lease) failed, no retry left: "
                                 f"lease expired after 1 attempts"),
            ("WARNING", "bob", f"bob: task #{crashed} (crash) failed, no retry left: "
                               f"agent restarted after 1 attempts")]
        assert set(q.recent_failures()) == {"alice", "bob"}

    def test_the_failure_count_covers_24_clock_hours_and_the_last_one_is_kept(self):
        q = self.make_queue()
        hours = (0, 1, 23, 24)  # clock hours after the first failure's
        ids = [q.send("cli", "alice", "t") for _ in hours]
        start = (self.clock() // 3600 + 1) * 3600
        for task_id, hour in zip(ids, hours):
            self.clock.set(start + hour * 3600 + 10)
            q.claim("alice")
            q.mark_failed(task_id, f"error at hour {hour}", agent="alice")
        failures = q.recent_failures()["alice"]
        assert failures["failed_24h"] == 3  # hours 1..24: the current one and the 23 before
        assert failures["last_failure"]["task_id"] == ids[-1]
        assert failures["last_failure"]["error"] == "error at hour 24"
        self.clock.advance(48 * 3600)
        assert q.recent_failures()["alice"]["failed_24h"] == 0
        assert q.recent_failures()["alice"]["last_failure"]["task_id"] == ids[-1]

    # -- pause ----------------------------------------------------------------
    def test_paused_agent_claims_nothing_until_resumed(self):
        q = self.make_queue()
        q.send("cli", "alice", "t")
        q.pause_agent("alice", reason="budget")
        other = self.make_queue()  # the pause is in the database, not in this object
        assert other.claim("alice") == [] and not other.has_work("alice")
        assert other.pauses()["alice"]["reason"] == "budget"
        assert other.claim("bob") == []
        assert q.resume_agent("alice") is True
        assert q.resume_agent("alice") is False
        assert len(other.claim("alice")) == 1 and q.pauses() == {}

    def test_pause_until_a_time_ends_by_itself(self):
        q = self.make_queue()
        q.send("cli", "alice", "t")
        q.pause_agent("alice", until=self.clock() + 60)
        assert q.claim("alice") == []
        self.clock.advance(60)
        assert q.pauses() == {} and len(q.claim("alice")) == 1

    def test_a_pause_that_ends_by_itself_ends_the_wait(self):
        q = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        q.send("cli", "alice", "t")
        q.pause_agent("alice", until=time.time() + 0.3)
        started = time.monotonic()
        assert q.wait("alice", timeout=10.0) is True
        assert 0.2 <= time.monotonic() - started < 2.0

    def test_automatic_pauses_only_lengthen_a_pause_in_force(self):
        q = self.make_queue()
        now = self.clock()
        q.pause_agent("alice", "by hand")                   # until resumed
        q.pause_agent("bob", "long", until=now + 500)
        q.pause_agent("carol", "short", until=now + 10)
        q.pause_agent("dave", "over", until=now - 10)       # past: as if none
        task = q.send("cli", "erin", "t")
        q.claim("erin")
        assert q.defer_task(task, "erin", now + 100, "rate limited",
                            also=("alice", "bob", "carol", "dave"))
        until = {name: p["paused_until"] for name, p in q.pauses().items()}
        assert until == {"alice": None, "bob": now + 500, "carol": now + 100,
                         "dave": now + 100, "erin": now + 100}
        assert q.pauses()["carol"]["reason"] == "erin rate limited"
        assert q.stop_for_budget("erin", "day", now + 50, "budget", ["erin", "bob"], "t", "erin")
        assert q.pauses()["erin"]["paused_until"] == now + 100  # not shortened by the budget

    def test_paused_agent_waits_and_resume_wakes_it(self):
        q = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        q.send("cli", "alice", "t")
        q.pause_agent("alice")
        started = time.monotonic()
        assert q.wait("alice", timeout=0.3) is False
        assert time.monotonic() - started >= 0.25  # blocked, not spinning on due work
        resumer = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        timer = threading.Timer(0.2, resumer.resume_agent, ("alice",))
        timer.start()
        started = time.monotonic()
        assert q.wait("alice", timeout=5.0) is True
        assert time.monotonic() - started < 2.0
        timer.join()

    # -- escalation -------------------------------------------------------------
    def test_escalation_raises_one_step_per_period_with_one_notice(self):
        q = self.make_queue(escalate_after=60)
        old = q.send("cli", "alice", "t", priority=2)
        self.clock.advance(30)
        young = q.send("cli", "alice", "t", priority=5)
        assert q.escalate_pending() == []
        self.clock.advance(30)
        assert q.escalate_pending() == [old]
        assert q.escalate_pending() == []  # once per period
        self.clock.advance(60)
        assert sorted(q.escalate_pending()) == [old, young]
        self.clock.advance(60)
        assert q.escalate_pending() == [young]  # old is at 0 already
        assert q.get_task(old)["priority"] == 0 and q.get_task(young)["priority"] == 3
        notes = q.notifications()
        assert [n["level"] for n in notes] == ["INFO", "INFO"]
        assert not any(n["sound"] for n in notes)

    def test_escalation_is_off_by_default(self):
        q = self.make_queue()
        q.send("cli", "alice", "t", priority=9)
        self.clock.advance(10**6)
        assert q.escalate_pending() == []

    # -- llm usage and budgets -----------------------------------------------------
    def test_a_runs_usage_row_is_kept_current_and_a_killed_run_is_settled(self):
        from coffee_team.queue.usage import utc_day
        q = self.make_queue()
        day = utc_day(self.clock())
        row = q.begin_usage(7, "alice", "job")
        other = q.begin_usage(8, "alice", "job")
        assert q.spend_on(day, "alice") == (0.0, 0)
        q.update_usage(row, {"cost_usd": 0.5, "tokens_in": 100, "tokens_out": 20})
        assert q.spend_on(day, "alice") == (0.5, 120) and q.spend_on(day) == (0.5, 120)
        q.update_usage(other, {"cost_usd": 0.25, "tokens_in": 1}, "ok", estimated=False)
        total = q.costs(0)["total"]
        assert (total["runs"], total["estimated_runs"], total["cost_usd"]) == (2, 1, 0.75)
        assert q.settle_running_usage("bob") == 0
        assert q.settle_running_usage("alice") == 1  # the finished run stays as it was
        assert q.settle_running_usage("alice") == 0
        rows = q.backend.fetchall("SELECT id, outcome, estimated, cost_usd FROM llm_usage"
                                  " ORDER BY id")
        assert [(r[0], r[1], bool(r[2]), r[3]) for r in rows] == [
            (row, "killed", True, 0.5), (other, "ok", False, 0.25)]

    def test_a_budget_stop_notifies_once_and_a_raise_lifts_it_for_the_day(self):
        from coffee_team.queue.usage import utc_day
        q = self.make_queue()
        day, until = utc_day(self.clock()), self.clock() + 3600
        stop = ("team:", day, until, "budget: the team's", ["alice", "bob"], "paused", None)
        assert q.stop_for_budget(*stop, already=["alice"])
        assert set(q.pauses()) == {"alice", "bob"} and len(q.notifications()) == 1
        q.resume_agent("alice")
        q.resume_agent("bob")
        assert not q.stop_for_budget(*stop, already=["alice"])  # raced: only the racer pauses
        assert set(q.pauses()) == {"alice"} and len(q.notifications()) == 1
        assert q.budget_stops("alice", day, "team:") == {"team:": "budget: the team's"}
        assert q.budget_stops("alice", "1999-01-01", "team:") == {}
        assert q.budget_allowance("team:", day) == (0.0, 0, False)
        assert q.lift_budget_stop("alice", ["team:"], day, usd=5.0)
        assert q.pauses() == {} and q.budget_stops("alice", day, "team:") == {}
        assert not q.lift_budget_stop("alice", ["team:"], day, tokens=100)  # raises add up
        assert q.budget_allowance("team:", day) == (5.0, 100, False)
        q.lift_budget_stop("alice", ["team:"], day, unlimited=True)
        assert q.budget_allowance("team:", day) == (5.0, 100, True)
        assert q.stop_for_budget(*stop)  # the stop was lifted: a new crossing notifies again
        assert len(q.notifications()) == 2

    # -- schema -------------------------------------------------------------------
    @fresh_database
    def test_a_version_8_llm_usage_gains_estimated_in_place(self):
        q = self.make_queue()
        q.record_usage(1, "alice", "t", {"cost_usd": 0.5})
        with q.db.atomic():
            q.db.execute_sql("ALTER TABLE llm_usage DROP COLUMN estimated")
            q.db.execute_sql("UPDATE schema_version SET version = 8")
        q.close()
        upgraded = self.make_queue()
        assert upgraded.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)]
        assert upgraded.costs(0)["total"]["estimated_runs"] == 0
        upgraded.begin_usage(2, "alice", "t")
        assert upgraded.costs(0)["total"]["estimated_runs"] == 1

    @fresh_database
    def test_a_version_1_database_is_upgraded_in_place(self):
        from coffee_team.queue.factory import is_postgres, open_database
        db = open_database(self.url)
        pg = is_postgres(db)
        kinds = {"pk": "SERIAL PRIMARY KEY" if pg else "INTEGER NOT NULL PRIMARY KEY",
                 "dbl": "DOUBLE PRECISION" if pg else "REAL"}
        with db.atomic():
            for statement in V1_DDL:
                db.execute_sql(statement.format(**kinds))
        db.close()
        q = self.make_queue()
        assert q.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)]
        assert {"deliveries", "notify_targets"} <= set(q.db.get_tables())  # version 5
        [old_pending, old_failed] = sorted(t["id"] for t in q.list_tasks())
        recipient = q.get_task(old_failed)["recipient"]
        assert q.stats()[recipient]["failed"] == 1  # schema 3 counted the finished rows
        assert q.get_task(old_pending)["run_after"] == 100.0
        assert q.retry_task(old_failed) == "failed"
        assert q.cancel_task(old_pending) == "pending"  # the new state passes the CHECK
        new = q.send("cli", "alice", "t")
        assert new > old_failed
        assert [t.id for t in q.claim("alice")] == [old_failed]

    @fresh_database
    def test_a_version_6_tasks_table_gains_traceparent_in_place(self):
        q = self.make_queue()
        old = q.send("cli", "alice", "t", {"kept": True})
        with q.db.atomic():
            q.db.execute_sql("ALTER TABLE tasks DROP COLUMN traceparent")
            q.db.execute_sql("UPDATE schema_version SET version = 6")
        q.close()
        upgraded = self.make_queue()
        assert upgraded.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)]
        (task,) = upgraded.claim("alice")
        assert (task.id, task.content, task.traceparent) == (old, {"kept": True}, None)
        upgraded.backend.insert_tasks(["cli", "alice", "t", "{}", 5, 0.0, None, 0.0,
                                       "00-" + "1" * 32 + "-" + "2" * 16 + "-01"], 1)
        assert upgraded.claim("alice")[0].traceparent.startswith("00-111")

    @fresh_database
    def test_a_version_11_session_becomes_the_session_of_key_empty(self):
        from coffee_team.queue.factory import is_postgres
        q = self.make_queue()
        dbl = "DOUBLE PRECISION" if is_postgres(q.db) else "REAL"
        with q.db.atomic():
            q.db.execute_sql("DROP TABLE llm_session")
            q.db.execute_sql("CREATE TABLE agent_session (agent VARCHAR(100) NOT NULL PRIMARY"
                             f" KEY, session_id TEXT NOT NULL, updated_at {dbl} NOT NULL)")
            q.db.execute_sql("INSERT INTO agent_session VALUES ('alice', 'sess-1', 5)")
            q.db.execute_sql("UPDATE schema_version SET version = 11")
        q.close()
        upgraded = self.make_queue()
        assert "agent_session" not in upgraded.db.get_tables()
        assert upgraded.agent_session("alice") == "sess-1"
        assert upgraded.agent_session("alice", "SPEC-1") is None
        upgraded.save_agent_session("alice", "sess-2", "SPEC-1")
        upgraded.save_agent_session("alice", "sess-3", "SPEC-1")
        assert (upgraded.agent_session("alice"), upgraded.agent_session("alice", "SPEC-1")) == \
            ("sess-1", "sess-3")

    @fresh_database
    def test_a_restart_state_without_host_goes_to_the_upgrading_host(self):
        from coffee_team.queue.factory import is_postgres
        q = self.make_queue()
        pg = is_postgres(q.db)
        kinds = {"dbl": "DOUBLE PRECISION" if pg else "REAL", "bool": "BOOLEAN" if pg else "INTEGER",
                 "true": "TRUE" if pg else "1", "false": "FALSE" if pg else "0"}
        with q.db.atomic():
            for statement in V2_RESTART_STATE_DDL:
                q.db.execute_sql(statement.format(**kinds))
        q.close()
        upgraded = self.make_queue(host="a")
        assert upgraded.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)]
        assert upgraded.restart_state("alice")["given_up"] is True
        assert upgraded.restart_state("alice")["attempts"] == 3
        other = self.make_queue(host="b")  # another host sharing the database: its own state
        assert other.restart_state("alice")["given_up"] is False
        other.save_restart_state("alice", attempts=1)
        assert upgraded.restart_states(["alice"])["alice"]["attempts"] == 3
        assert other.restart_states(["alice"])["alice"]["attempts"] == 1

