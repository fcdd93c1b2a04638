"""Backend-independent MessageQueue tests (huey style).

A backend test module subclasses ``QueueContract`` and provides
``database_url()`` (per test, a database as the migration leaves it with nothing else in it:
a new one, or a migrated one shared by the tests with its data reset) and optionally
``cleanup_database()``; a test marked ``@fresh_database`` (one that migrates or changes the
schema) gets an empty database of its own (``self.fresh_database`` tells the backend).  Time
never passes by sleeping: queues get a ``FakeClock`` that tests advance by hand.  Listing,
stats, cleanup and the journal are in queue_listing_contract.py (``ListingContract``), mixed in
beside this one.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coffee_team.queue.tables import SCHEMA_VERSION
from coffee_team.queue import (
    ClaimedTask,
    ContentError,
    MessageQueue,
    QueueError,
    QueueFullError,
    UnroutableError,
)
from coffee_team.errors import UnstorableResult
from coffee_team.taskstate import RetryPolicy
from tests.clock import FakeClock

TEAM = ("architect", "code_developer", "reviewer")
HANDLES = {"architect": ("design",), "code_developer": ("implement", "fix"),
           "reviewer": ("review", "fix")}


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def cycle() -> dict:
    value: dict = {}
    value["self"] = value
    return value


def deep_json(levels: int) -> str:
    return "[" * levels + "]" * levels


def fresh_database(test):
    """The test migrates or changes the schema itself: it needs an empty database of its own,
    never one shared with other tests."""
    test.fresh_database = True
    return test


class QueueContract:
    # -- harness ----------------------------------------------------------
    def database_url(self) -> str:
        raise NotImplementedError

    def cleanup_database(self) -> None:
        pass

    def setup_method(self, method):
        self.clock = FakeClock()
        self._queues: list[MessageQueue] = []
        self.wake_dir = tempfile.mkdtemp(prefix="ctw")
        self.fresh_database = getattr(method, "fresh_database", False)
        self.url = self.database_url()

    def teardown_method(self, method):
        for queue in self._queues:
            queue.close()
        self.cleanup_database()

    def make_queue(self, **kw) -> MessageQueue:
        kw.setdefault("clock", self.clock)
        queue = MessageQueue(kw.pop("database", self.url), **kw)
        self._queues.append(queue)
        return queue

    def team_queue(self, **kw) -> MessageQueue:
        return self.make_queue(agents=TEAM, handles=HANDLES, **kw)

    # -- send / claim -----------------------------------------------------
    def test_send_then_claim_round_trips_content(self):
        q = self.make_queue()
        content = {"text": "héllo", "n": [1, 2.5, None, True]}
        task_id = q.send("cli", "alice", "greet", content)
        [task] = q.claim("alice")
        assert isinstance(task, ClaimedTask)
        assert (task.id, task.sender, task.recipient, task.type) == (task_id, "cli", "alice", "greet")
        assert task.content == content
        assert task.attempts == 1 and task.priority == 5
        assert task.created_at == self.clock.now
        assert task.lease_expires_at == self.clock.now + q.lease_seconds

    def test_claim_empty_queue_returns_nothing(self):
        assert self.make_queue().claim("alice") == []

    def test_claim_only_sees_own_tasks(self):
        q = self.make_queue()
        q.send("cli", "alice", "t")
        assert q.claim("bob") == []
        assert len(q.claim("alice")) == 1

    def test_claim_orders_by_priority_then_fifo(self):
        q = self.make_queue()
        ids = [q.send("cli", "alice", "t", i, priority=p) for i, p in enumerate([5, 1, 5, 0, 9, 1])]
        claimed = q.claim("alice", limit=10)
        order = [ids[3], ids[1], ids[5], ids[0], ids[2], ids[4]]
        assert [t.id for t in claimed] == order

    def test_claim_respects_limit_and_never_hands_out_twice(self):
        q = self.make_queue()
        q.send_many([dict(sender="cli", recipient="alice", type="t", content=i) for i in range(5)])
        first = q.claim("alice", limit=2)
        second = q.claim("alice", limit=10)
        assert len(first) == 2 and len(second) == 3
        assert not {t.id for t in first} & {t.id for t in second}
        assert q.claim("alice") == []

    def test_two_queue_objects_share_the_database(self):
        producer, consumer = self.make_queue(), self.make_queue()
        task_id = producer.send("cli", "alice", "t")
        assert [t.id for t in consumer.claim("alice")] == [task_id]
        assert producer.claim("alice") == []

    def test_concurrent_claimers_in_threads_get_disjoint_tasks(self):
        q = self.make_queue()
        q.send_many([dict(sender="cli", recipient="alice", type="t", content=i) for i in range(200)])
        got: list[int] = []
        lock = threading.Lock()

        def worker():
            while True:
                tasks = q.claim("alice", limit=3)
                if not tasks:
                    return
                with lock:
                    got.extend(t.id for t in tasks)
                for t in tasks:
                    assert q.mark_completed(t.id)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 200 == len(set(got))
        assert q.stats()["alice"]["completed"] == 200

    # -- completion -------------------------------------------------------
    def test_mark_completed_stores_result_and_metric(self):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "build")
        q.claim("alice")
        self.clock.advance(1.5)
        assert q.mark_completed(task_id, {"ok": True}) is True
        [row] = q.get_messages("alice", status="completed")
        assert row["result"] == {"ok": True} and row["completed_at"] == self.clock.now
        [perf] = q.agent_performance()
        assert perf["agent"] == "alice" and perf["count"] == 1
        assert perf["avg_ms"] == pytest.approx(1500.0)

    def test_mark_completed_only_in_progress(self):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        assert q.mark_completed(task_id) is False  # still pending
        q.claim("alice")
        assert q.mark_completed(task_id) is True
        assert q.mark_completed(task_id) is False  # already done
        assert q.mark_failed(task_id, "late") is False
        assert q.mark_completed(999_999) is False
        assert len(q.agent_performance()) == 1

    def test_mark_completed_can_require_holder(self):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        assert q.mark_completed(task_id, agent="mallory") is False
        assert q.mark_completed(task_id, agent="alice") is True

    def test_mark_failed_records_error(self):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        assert q.mark_failed(task_id, "boom") is True
        [row] = q.get_messages("alice", status="failed")
        assert row["error"] == "boom" and row["claimed_by"] == "alice"
        assert q.bottlenecks()[0]["task_type"] == "t"

    def test_result_must_be_json(self):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        with pytest.raises(ContentError):
            q.mark_completed(task_id, object())
        assert q.mark_completed(task_id, [1]) is True

    # -- leases -----------------------------------------------------------
    def test_expired_lease_is_reclaimed(self):
        q = self.make_queue(lease_seconds=10)
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        self.clock.advance(5)
        assert q.claim("alice") == []
        self.clock.advance(6)
        [again] = q.claim("alice")
        assert again.id == task_id and again.attempts == 2

    def test_expired_lease_after_max_attempts_fails_the_task(self):
        q = self.make_queue(lease_seconds=10, max_attempts=2)
        task_id = q.send("cli", "alice", "t")
        for _ in range(2):
            assert [t.id for t in q.claim("alice")] == [task_id]
            self.clock.advance(11)
        assert q.claim("alice") == []
        [row] = q.get_messages("alice", status="failed")
        assert row["id"] == task_id and row["error"] == "lease expired after 2 attempts"

    def test_stale_worker_cannot_complete_after_reclaim_by_other_holder(self):
        q = self.make_queue(lease_seconds=10)
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        self.clock.advance(11)
        q.claim("alice")
        assert q.mark_completed(task_id, agent="alice") is True
        assert q.mark_completed(task_id, agent="alice") is False

    def test_renewed_lease_outlives_its_first_term(self):
        q = self.make_queue(lease_seconds=10)
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        for _ in range(12):  # two minutes of a 10 s lease, renewed every ~3 s
            self.clock.advance(3.3)
            assert q.renew_lease(task_id, "alice", 10) is True
            assert q.holds_task(task_id, "alice") is True
            assert q.claim("alice") == [] and not q.has_work("alice")
        [row] = q.get_messages("alice", status="in_progress")
        assert row["attempts"] == 1 and row["lease_expires_at"] == self.clock.now + 10
        self.clock.advance(11)  # renewals stop (the agent died): the lease is the safety net
        assert [t.id for t in q.claim("alice")] == [task_id]

    def test_renew_lease_is_false_once_the_task_is_not_the_agents(self):
        q = self.make_queue(lease_seconds=10)
        done, requeued, other = (q.send("cli", "alice", "t", i) for i in range(3))
        q.claim("alice", limit=3)
        assert q.renew_lease(other, "bob", 10) is False  # someone else's claim
        assert q.holds_task(other, "bob") is False
        q.mark_completed(done, {"ok": 1})
        assert (q.renew_lease(done, "alice", 10), q.holds_task(done, "alice")) == (False, False)
        q.requeue_agent("alice")  # e.g. the rpcinterface reaped a dead instance
        assert q.renew_lease(requeued, "alice", 10) is False
        assert q.get_messages("alice", status="pending")[0]["lease_expires_at"] is None
        assert q.renew_lease(10**6, "alice", 10) is False  # no such task

    def test_requeue_agent_returns_tasks_to_pending(self):
        q = self.make_queue()
        ids = [q.send("cli", "alice", "t", i) for i in range(3)]
        q.send("cli", "bob", "t")
        q.claim("alice", limit=2)
        q.claim("bob")
        assert q.requeue_agent("alice") == 2
        pending = q.get_messages("alice")
        assert [r["id"] for r in pending] == ids
        assert all(r["claimed_by"] is None for r in pending)
        assert q.get_messages("bob", status="in_progress")
        assert q.requeue_agent("alice") == 0

    def test_requeue_fails_tasks_out_of_attempts(self):
        q = self.make_queue(max_attempts=2)
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        assert q.requeue_agent("alice") == 1
        q.claim("alice")
        assert q.requeue_agent("alice") == 0
        [row] = q.get_messages("alice", status="failed")
        assert row["id"] == task_id and "after 2 attempts" in row["error"]

    # -- send rules -------------------------------------------------------
    def test_dedupe_key_returns_existing_live_task(self):
        q = self.make_queue()
        first = q.send("cli", "alice", "t", dedupe_key="k1")
        assert q.send("cli", "alice", "t", {"other": 1}, dedupe_key="k1") == first
        assert q.send("cli", "bob", "t", dedupe_key="k1") != first
        q.claim("alice")
        assert q.send("cli", "alice", "t", dedupe_key="k1") == first  # in progress
        q.mark_completed(first)
        assert q.send("cli", "alice", "t", dedupe_key="k1") != first  # done: new task

    def test_dedupe_within_one_batch(self):
        q = self.make_queue()
        ids = q.send_many([dict(sender="s", recipient="alice", type="t", dedupe_key="k"),
                           dict(sender="s", recipient="alice", type="t", dedupe_key="k"),
                           dict(sender="s", recipient="alice", type="t")])
        assert ids[0] == ids[1] != ids[2]
        assert len(q.get_messages("alice")) == 2

    def test_backpressure(self):
        q = self.make_queue(max_queue_size=3)
        for _ in range(3):
            q.send("cli", "alice", "t")
        with pytest.raises(QueueFullError, match=r"^alice has 3 pending tasks \(max_queue_size 3\)"):
            q.send("cli", "alice", "t")
        q.send("cli", "bob", "t")  # other recipients unaffected
        q.claim("alice")
        q.send("cli", "alice", "t")  # room again

    def test_backpressure_rejects_whole_batch(self):
        q = self.make_queue(max_queue_size=3)
        q.send("cli", "alice", "t")
        with pytest.raises(QueueFullError):
            q.send_many([dict(sender="s", recipient="alice", type="t")] * 3)
        assert len(q.get_messages("alice")) == 1

    @pytest.mark.parametrize("kwargs, match", [
        (dict(content=object()), "not JSON-serialisable"),
        (dict(content=float("nan")), "not JSON-serialisable"),
        (dict(content="x" * (1024 * 1024)), "limit is 1048576"),
        (dict(content=nested(65)), "nested more than 64 levels deep"),
        (dict(content=nested(992)), "nested more than 64 levels deep"),
        (dict(content=cycle()), "nested more than 64 levels deep"),
        (dict(priority=10), "priority"),
        (dict(priority=-1), "priority"),
        (dict(priority=True), "priority"),
        (dict(priority="1"), "priority"),
        (dict(type=""), "type"),
        (dict(type="t" * 101), "type"),
        (dict(sender=""), "sender"),
        (dict(sender=None), "sender"),
        (dict(dedupe_key=5), "dedupe_key"),
    ])
    def test_invalid_messages_raise_content_error_and_write_nothing(self, kwargs, match):
        q = self.make_queue()
        message = dict(sender="cli", recipient="alice", type="t", content=None)
        message.update(kwargs)
        with pytest.raises(ContentError, match=match) as info:
            q.send(**message)
        assert isinstance(info.value, QueueError) and "\n" not in str(info.value)
        assert q.list_tasks() == []

    def test_content_64_deep_is_accepted(self):
        q = self.make_queue()
        q.send("cli", "alice", "t", nested(64))
        assert q.claim("alice")[0].content == nested(64)

    @pytest.mark.parametrize("result", [{1}, float("inf"), "x" * (1024 * 1024), nested(65)],
                             ids=["set", "inf", "1 MiB", "65 deep"])
    def test_unstorable_result_raises_and_leaves_the_task_in_progress(self, result):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        with pytest.raises(UnstorableResult, match="^result "):
            q.mark_completed(task_id, result, follow_ups=[dict(sender="alice", recipient="bob",
                                                               type="t")])
        (task,) = q.list_tasks()
        assert task["status"] == "in_progress"
        assert q.mark_failed(task_id, "result not stored")

    def test_bad_follow_up_is_a_content_error_not_an_unstorable_result(self):
        q = self.make_queue()
        task_id = q.send("cli", "alice", "t")
        q.claim("alice")
        with pytest.raises(ContentError) as info:
            q.mark_completed(task_id, "ok", follow_ups=[dict(sender="alice", recipient="bob",
                                                             type="t", content={1})])
        assert not isinstance(info.value, UnstorableResult)

    def test_content_stored_992_deep_by_an_older_version_fails_instead_of_crashing(self):
        """A row no reader can walk (older versions let it in): the claim fails it with the
        reason and hands out the next task; listings show a placeholder."""
        q = self.make_queue()
        now = self.clock()
        q.backend.insert_tasks(["old", "alice", "t", deep_json(992), 1, now, None, now, None], 1)
        fine = q.send("cli", "alice", "t", {"ok": 1}, priority=2)
        (claimed,) = q.claim("alice")
        assert (claimed.id, claimed.content) == (fine, {"ok": 1})
        deep = next(t for t in q.list_tasks() if t["id"] != fine)
        assert deep["status"] == "failed"
        assert deep["error"] == "content is nested more than 64 levels deep; not run"
        assert deep["content"].startswith("<content not shown: nested more than 64 levels")
        assert q.stats()["alice"]["failed"] == 1
        [note] = q.notifications()  # failed for good: said once
        assert note["title"] == f"alice: task #{deep['id']} (t) failed"
        json.dumps(q.list_tasks())  # every reader downstream can walk what it gets

    def test_content_just_under_limit_is_accepted(self):
        q = self.make_queue()
        q.send("cli", "alice", "t", "x" * (1024 * 1024 - 2))  # + 2 quotes = 1 MiB

    def test_send_many_is_all_or_nothing(self):
        q = self.make_queue()
        with pytest.raises(ContentError):
            q.send_many([dict(sender="s", recipient="alice", type="t"),
                         dict(sender="s", recipient="alice", type="t", priority=42)])
        with pytest.raises(ContentError, match="unknown message field"):
            q.send_many([dict(sender="s", recipient="alice", type="t", colour="red")])
        assert q.list_tasks() == []
        assert q.send_many([]) == []

    def test_send_many_returns_ids_in_order(self):
        q = self.make_queue(max_queue_size=5000)  # > 1 insert chunk
        ids = q.send_many([dict(sender="s", recipient="alice", type="t", content=i) for i in range(1200)])
        assert len(set(ids)) == 1200 and ids == sorted(ids)
        assert [t.content for t in q.claim("alice", limit=1200)] == list(range(1200))

    # -- routing through the queue -----------------------------------------
    def test_routes_by_type_when_no_recipient(self):
        q = self.team_queue()
        q.send("cli", None, "implement")
        q.send("cli", "", "fix")  # two handlers: first in team order
        assert len(q.get_messages("code_developer")) == 2

    def test_broadcast_creates_one_task_per_agent(self):
        q = self.team_queue()
        first = q.send("cli", "all", "announce", {"v": 1})
        ids = q.send_all("cli", "announce")
        assert len(ids) == 3 and first not in ids
        for agent in TEAM:
            assert [t.type for t in q.claim(agent, limit=5)] == ["announce", "announce"]

    def test_unknown_recipient_and_unroutable_type(self):
        q = self.team_queue()
        with pytest.raises(UnroutableError, match="known agents: architect, code_developer, reviewer"):
            q.send("cli", "nobody", "t")
        with pytest.raises(UnroutableError, match="'dance'"):
            q.send("cli", None, "dance")
        assert q.list_tasks() == []

    def test_from_team(self):
        """The team's database_url and its queue_options(overrides): the mapping itself lives
        with the team file (tests/unit/test_team.py), so the queue needs no import of it."""
        asked = []

        def queue_options(**overrides):
            asked.append(overrides)
            return dict(agents=TEAM, handles=HANDLES, max_queue_size=7, wake_dir=self.wake_dir,
                        retry={"reviewer": RetryPolicy(attempts=2)}, **overrides)
        team = SimpleNamespace(database_url=self.url, queue_options=queue_options)
        q = MessageQueue.from_team(team, clock=self.clock)
        self._queues.append(q)
        assert asked == [{"clock": self.clock}] and q.clock is self.clock
        assert q.max_queue_size == 7 and q.agents == TEAM and q.retry["reviewer"].attempts == 2
        q.send("cli", None, "review")
        assert q.claim("reviewer")

    def test_adopt_team_changes_routing_and_limits_only(self):
        q = self.team_queue()
        reloaded = dict(agents=("solo",), handles={"solo": ("review",)}, max_queue_size=2,
                        retry={}, escalate_after=60.0, lease_seconds=5.0,
                        wake_dir="/elsewhere", host="other-host",
                        approve_before={"solo": ("deploy",)})
        q.adopt_team(SimpleNamespace(queue_options=lambda **o: {**reloaded, **o}))
        assert (q.agents, q.max_queue_size, q.escalate_after, q.lease_seconds,
                q.approve_before) == (("solo",), 2, 60.0, 5.0, {"solo": ("deploy",)})
        assert q.host == ""  # whose restart state the process keeps does not move
        q.send("cli", None, "review")
        assert q.claim("solo")

    # -- wait / wake ------------------------------------------------------
    def test_wait_returns_immediately_when_work_is_pending(self):
        q = self.make_queue(wake_dir=self.wake_dir)
        q.send("cli", "alice", "t")
        assert q.wait("alice", timeout=0) is True

    def test_wait_times_out_without_work(self):
        assert self.make_queue(wake_dir=self.wake_dir).wait("alice", timeout=0) is False
        assert self.make_queue().wait("alice", timeout=0) is False

    def test_wait_is_woken_by_send_from_another_queue(self):
        consumer = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        producer = self.make_queue(wake_dir=self.wake_dir, clock=time.time)
        assert consumer.wait("alice", timeout=0) is False  # binds the socket
        assert os.path.exists(os.path.join(self.wake_dir, "alice.sock"))
        timer = threading.Timer(0.05, producer.send, ("cli", "alice", "t"))
        timer.start()
        started = time.monotonic()
        assert consumer.wait("alice", timeout=5) is True
        timer.join()
        assert time.monotonic() - started < 2
        assert oct(os.stat(self.wake_dir).st_mode & 0o777) == "0o700"

    def test_wait_without_socket_polls(self):
        consumer = self.make_queue(clock=time.time)
        producer = self.make_queue(clock=time.time)
        timer = threading.Timer(0.05, producer.send, ("cli", "alice", "t"))
        timer.start()
        assert consumer.wait("alice", timeout=5) is True
        timer.join()

    def test_second_waiter_for_same_agent_degrades_to_polling(self):
        first = self.make_queue(wake_dir=self.wake_dir)
        second = self.make_queue(wake_dir=self.wake_dir)
        first.wait("alice", 0)
        assert second.wait("alice", 0) is False
        second.send("cli", "alice", "t")
        assert second.wait("alice", 1) is True and first.wait("alice", 1) is True

    def test_closing_removes_wake_socket(self):
        q = self.make_queue(wake_dir=self.wake_dir)
        q.wait("alice", 0)
        q.close()
        self._queues.remove(q)
        assert not os.path.exists(os.path.join(self.wake_dir, "alice.sock"))

    # -- schema -----------------------------------------------------------
    @fresh_database
    def test_migrate_is_idempotent(self):
        q1 = self.make_queue()
        q1.send("cli", "alice", "t")
        q2 = self.make_queue()
        assert len(q2.get_messages("alice")) == 1
        rows = q2.backend.fetchall("SELECT version FROM schema_version")
        assert rows == [(SCHEMA_VERSION,)]

    @fresh_database
    def test_concurrent_migrate_in_threads(self):
        errors = []

        def open_queue():
            try:
                self.make_queue()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_queue) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    # -- follow-ups are atomic with completion ----------------------------------
    def test_follow_ups_are_sent_with_the_completion_and_only_then(self):
        q = self.make_queue()
        q.send("cli", "alice", "work")
        task = q.claim("alice")[0]
        assert q.mark_completed(task.id, {"ok": 1}, follow_ups=[
            {"sender": "alice", "recipient": "bob", "type": "next", "content": {"from": task.id}}])
        [follow] = q.get_messages("bob")
        assert follow["content"] == {"from": task.id} and follow["sender"] == "alice"
        # completing again (a stale worker) fails and sends nothing
        assert not q.mark_completed(task.id, follow_ups=[
            {"sender": "alice", "recipient": "bob", "type": "next"}])
        assert len(q.get_messages("bob")) == 1

    def test_invalid_follow_up_changes_nothing(self):
        q = self.make_queue()
        q.send("cli", "alice", "work")
        task = q.claim("alice")[0]
        with pytest.raises(ContentError):
            q.mark_completed(task.id, follow_ups=[{"sender": "alice", "recipient": "bob",
                                                   "type": "next", "content": {1, 2}}])
        assert [t["status"] for t in q.list_tasks(agent="alice")] == ["in_progress"]
        assert q.get_messages("bob") == []

    # -- properties ---------------------------------------------------------
    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.differing_executors])  # one per backend class
    @given(st.lists(st.tuples(st.integers(0, 9), st.integers(1, 4)), min_size=1, max_size=30))
    def test_claims_drain_in_priority_fifo_order_exactly_once(self, plan):
        # One queue per test; a fresh recipient per example keeps examples apart.
        if not hasattr(self, "_prop_queue"):
            self._prop_queue, self._prop_examples = self.make_queue(max_queue_size=100), 0
        q, self._prop_examples = self._prop_queue, self._prop_examples + 1
        agent = f"prop{self._prop_examples}"
        ids = [q.send("cli", agent, "t", priority=p) for p, _ in plan]
        expected = [i for _, i in sorted(zip([p for p, _ in plan], ids))]
        got = []
        for _, batch in plan:
            got += [t.id for t in q.claim(agent, limit=batch)]
        got += [t.id for t in q.claim(agent, limit=len(ids))]
        assert got == expected
        assert json.loads(json.dumps(q.stats()))[agent]["in_progress"] == len(ids)
