"""Listing, stats, cleanup and the journal (events, notifications, restart state) of
MessageQueue, against every backend.

Mixed into the backend test classes next to QueueContract (which provides make_queue() on a
fresh database and a FakeClock).
"""
from __future__ import annotations

import pytest

from coffee_team.queue import ContentError


class ListingContract:
    # -- listing / stats / cleanup -----------------------------------------
    def test_list_tasks_filters(self):
        q = self.make_queue()
        a = q.send("cli", "alice", "t")
        b = q.send("cli", "bob", "t")
        q.claim("bob")
        assert [r["id"] for r in q.list_tasks()] == [b, a]
        assert [r["id"] for r in q.list_tasks(status="in_progress")] == [b]
        assert [r["id"] for r in q.list_tasks(agent="alice")] == [a]
        assert len(q.list_tasks(limit=1)) == 1

    def test_list_tasks_pages_by_id(self):
        """The dashboard pages past its latest 30: ``before_id`` is the last id shown."""
        q = self.make_queue()
        ids = [q.send("cli", "alice", "t") for _ in range(5)]
        first = q.list_tasks(agent="alice", limit=2)
        assert [r["id"] for r in first] == ids[:-3:-1]
        second = q.list_tasks(agent="alice", limit=2, before_id=first[-1]["id"])
        assert [r["id"] for r in second] == [ids[2], ids[1]]
        assert [r["id"] for r in q.list_tasks(status="pending", before_id=ids[1])] == [ids[0]]
        assert q.list_tasks(before_id=ids[0]) == []

    def test_stats(self):
        q = self.make_queue()
        q.send("cli", "alice", "t")
        self.clock.advance(10)
        q.send("cli", "alice", "t")
        q.send("cli", "bob", "t")
        [task] = q.claim("bob")
        q.mark_completed(task.id)
        self.clock.advance(5)
        stats = q.stats()
        assert stats["alice"] == {"waiting": 0, "awaiting_approval": 0, "pending": 2,
                                  "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0,
                                  "oldest_pending_age_s": 15.0}
        assert stats["bob"]["completed"] == 1 and stats["bob"]["oldest_pending_age_s"] is None

    def test_stats_match_the_rows_through_every_transition(self):
        """The finished counts come from trigger-kept counters: after completions, failures,
        cancels, retries, lease expiries, requeues and cleanup they still match the rows."""
        q = self.make_queue(max_attempts=2, lease_seconds=10)

        def counted_by_hand():
            out: dict = {}
            for t in q.list_tasks(limit=10**4):
                out.setdefault(t["recipient"], {})
                out[t["recipient"]][t["status"]] = out[t["recipient"]].get(t["status"], 0) + 1
            return out

        def assert_stats_match():
            by_hand, stats = counted_by_hand(), q.stats()
            for recipient, row in stats.items():
                counts = {k: v for k, v in row.items() if k != "oldest_pending_age_s" and v}
                assert counts == by_hand.get(recipient, {}), recipient
            assert set(by_hand) <= set(stats)

        ids = [q.send("cli", name, "t") for name in ("alice", "bob") for _ in range(6)]
        for task in q.claim("alice", limit=4):
            q.mark_completed(task.id, "ok")
        assert_stats_match()
        (first,) = q.claim("bob", limit=1)
        q.mark_failed(first.id, "boom")
        q.cancel_task(ids[-1])
        assert_stats_match()
        q.retry_task(first.id)
        q.retry_task(ids[-1])
        assert_stats_match()
        q.claim("bob", limit=2)
        self.clock.advance(11)
        q.claim("bob", limit=2)  # leases expired: released, claimed again
        self.clock.advance(11)
        q.claim("bob", limit=1)  # attempts used up: the expired ones fail
        q.requeue_agent("bob")
        assert_stats_match()
        self.clock.advance(100)
        q.cleanup(50)
        assert_stats_match()
        assert q.stats()["alice"]["completed"] == 0

    def test_cleanup_deletes_only_old_finished_tasks(self):
        q = self.make_queue()
        done, failed, live = (q.send("cli", "alice", "t") for _ in range(3))
        q.claim("alice", limit=3)
        q.mark_completed(done)
        q.mark_failed(failed, "x")
        self.clock.advance(100)
        assert q.cleanup(200) == 0
        assert q.cleanup(50) == 2
        assert [r["id"] for r in q.list_tasks()] == [live]

    def test_analytics(self):
        q = self.make_queue()
        for agent, task_type, seconds in [("a", "slow", 3), ("a", "fast", 1), ("b", "slow", 5)]:
            task_id = q.send("cli", agent, task_type)
            q.claim(agent)
            self.clock.advance(seconds)
            q.mark_completed(task_id)
        slow, fast = q.bottlenecks()
        assert (slow["task_type"], slow["count"], slow["avg_ms"], slow["max_ms"]) == ("slow", 2, 4000, 5000)
        assert fast["avg_ms"] == 1000
        assert [(p["agent"], p["count"], p["avg_ms"]) for p in q.agent_performance()] == [
            ("a", 2, 2000), ("b", 1, 5000)]
        self.clock.advance(8 * 86400)
        assert q.bottlenecks(days=7) == [] and len(q.bottlenecks(days=30)) == 2


    # -- journal ----------------------------------------------------------
    def test_events(self):
        q = self.make_queue()
        first = q.record_event("alice", "started", pid=42)
        q.record_event("bob", "crashed", exit_code=-9)
        q.record_event(None, "team_started")
        assert [e["kind"] for e in q.events()] == ["started", "crashed", "team_started"]
        assert [e["detail"] for e in q.events(agent="bob")] == [{"exit_code": -9}]
        assert [e["kind"] for e in q.events(since_id=first, limit=1)] == ["crashed"]
        assert q.events()[0]["ts"] == self.clock.now

    def test_notifications_are_silent_and_ackable(self):
        q = self.make_queue()
        n1 = q.notify("CRITICAL", "alice", "Agent gave up", "alice crashed 5 times")
        n2 = q.notify("INFO", None, "Started", "team up")
        all_ = q.notifications()
        assert [n["id"] for n in all_] == [n1, n2]
        assert all(n["sound"] is False and n["acknowledged"] is False for n in all_)
        assert q.ack_notification(n1) is True and q.ack_notification(n1) is False
        assert [n["id"] for n in q.notifications(unacked_only=True)] == [n2]
        assert [n["id"] for n in q.notifications(since_id=n1)] == [n2]
        assert [n["id"] for n in q.notifications(limit=1)] == [n1]
        assert [n["id"] for n in q.notifications(unacked_only=True, limit=1)] == [n2]
        assert q.notification_exists(n1) and not q.notification_exists(n2 + 1)
        with pytest.raises(ContentError, match="level"):
            q.notify("LOUD", None, "x", "y")

    def test_recent_events_of_kinds_newest_first(self):
        q = self.make_queue()
        crash = q.record_event("alice", "crash", code=1)
        q.record_event("alice", "heartbeat")
        q.record_event("bob", "crash")
        restart = q.record_event("alice", "restarted")
        events = q.recent_events("alice", ("crash", "restarted"), limit=10)
        assert [(e["id"], e["kind"]) for e in events] == [(restart, "restarted"), (crash, "crash")]
        assert events[1]["detail"] == {"code": 1}
        assert [e["id"] for e in q.recent_events("alice", ("crash", "restarted"), 1)] == [restart]

    def test_restart_state(self):
        q = self.make_queue()
        assert q.restart_state("alice") == {
            "agent": "alice", "attempts": 0, "next_restart_at": None, "given_up": False,
            "running_since": None, "last_crash_at": None, "hang_restart": False}
        q.save_restart_state("alice", attempts=2, next_restart_at=123.5, hang_restart=True)
        state = q.save_restart_state("alice", attempts=3)
        assert (state["attempts"], state["next_restart_at"], state["hang_restart"]) == (3, 123.5, True)
        assert q.save_restart_state("alice", next_restart_at=None)["next_restart_at"] is None
        with pytest.raises(ContentError, match="unknown restart_state field"):
            q.save_restart_state("alice", colour="red")
