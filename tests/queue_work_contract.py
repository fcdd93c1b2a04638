"""Contract tests for work over time (issue 28), mixed into QueueContract so they run against
SQLite and PostgreSQL alike, on a FakeClock: tasks sent after other tasks (released in the
transaction of the last parent's completion, whichever path completes it), schedule slots
taken once, the wait-for graph's reads."""
from __future__ import annotations

import threading

import pytest

from coffee_team.errors import DependencyError, QueueFullError
from coffee_team.queue import MessageQueue
from tests.queue_contract import fresh_database


class WorkContract:
    def status(self, q: MessageQueue, task_id: int) -> str:
        return q.get_task(task_id)["status"]

    # -- dependencies ---------------------------------------------------------------------
    def fan_in(self, q: MessageQueue, **kw) -> tuple[list[int], int]:
        parents = [q.send("cli", "alice", "part", {"n": n}) for n in range(3)]
        child = q.send("cli", "bob", "verify", after=parents, **kw)
        return parents, child

    @pytest.mark.parametrize("path", ["mark_completed", "complete_and_claim"])
    def test_a_fan_in_of_three_is_claimable_after_the_last_completion_only(self, path):
        q = self.make_queue()
        parents, child = self.fan_in(q)
        assert self.status(q, child) == "waiting" and q.get_task(child)["waiting_on"] == 3
        [task] = q.claim("alice")
        for n in range(3):
            assert q.claim("bob") == []  # never early
            if path == "mark_completed":
                assert q.mark_completed(task.id, {"n": n}, agent="alice")
                claimed = q.claim("alice")
            else:  # the agent's loop: the next parent claimed in the same transaction
                done, claimed = q.complete_and_claim(task.id, {"n": n}, agent="alice")
                assert done
            assert [t.id for t in claimed] == parents[n + 1:n + 2]
            task = claimed[0] if claimed else None
        assert self.status(q, child) == "pending"
        [task] = q.claim("bob")
        assert task.id == child
        assert q.dependencies(child)["parents"] == [
            {"id": p, "status": "completed", "recipient": "alice", "type": "part",
             "resolved": True, "on_dependency_failure": "fail"} for p in parents]
        assert [c["id"] for c in q.dependencies(parents[0])["children"]] == [child]

    def test_a_child_released_late_counts_as_due_from_its_release(self):
        q = self.make_queue(escalate_after=60)
        parent = q.send("cli", "alice", "part")
        child = q.send("cli", "bob", "verify", priority=5, after=[parent])
        self.clock.advance(3600)
        [task] = q.claim("alice")
        q.mark_completed(task.id)
        assert q.get_task(child)["run_after"] == self.clock.now
        assert q.escalate_pending() == []  # it did not wait an hour in the queue

    @pytest.mark.parametrize("end, error", [("fail", "dependency #{} failed"),
                                            ("cancel", "dependency #{} failed (cancelled)")])
    def test_a_parent_that_fails_or_is_cancelled_fails_the_chain(self, end, error):
        q = self.make_queue()
        parents, child = self.fan_in(q)
        grandchild = q.send("cli", "carol", "ship", after=[child])
        [first] = q.claim("alice")
        if end == "fail":
            q.mark_failed(first.id, "boom")
        else:
            q.cancel_task(first.id)
        for task_id in (child, grandchild):
            row = q.get_task(task_id)
            assert row["status"] == "failed" and row["completed_at"] == self.clock.now
        assert q.get_task(child)["error"] == error.format(first.id)
        assert q.get_task(grandchild)["error"] == f"dependency #{child} failed"
        assert q.stats()["bob"]["failed"] == 1  # the finished counts follow the trigger too

    def test_on_dependency_failure_run_counts_a_failed_parent_as_done_once(self):
        q = self.make_queue()
        parents, child = self.fan_in(q, on_dependency_failure="run")
        [first] = q.claim("alice")
        q.mark_failed(first.id, "boom")
        q.retry_task(first.id)  # retried and completed later: not counted a second time
        [again] = q.claim("alice")
        q.mark_completed(again.id)
        assert q.get_task(child)["waiting_on"] == 2
        for _ in range(2):
            [task] = q.claim("alice")
            q.mark_completed(task.id)
        assert self.status(q, child) == "pending"

    def test_parents_already_finished_at_send(self):
        q = self.make_queue()
        done, failed = q.send("cli", "alice", "a"), q.send("cli", "alice", "b")
        for task_id, end in ((done, q.mark_completed), (failed, q.mark_failed)):
            q.claim("alice")
            end(task_id, *(() if end == q.mark_completed else ("boom",)))
        assert self.status(q, q.send("cli", "bob", "t", after=[done])) == "pending"
        late = q.send("cli", "bob", "t", after=[done, failed])
        assert (self.status(q, late), q.get_task(late)["error"]) == (
            "failed", f"dependency #{failed} failed")
        assert self.status(q, q.send("cli", "bob", "t", after=[failed],
                                     on_dependency_failure="run")) == "pending"

    def test_a_missing_parent_is_refused_and_nothing_is_sent(self):
        q = self.make_queue()
        real = q.send("cli", "alice", "a")
        with pytest.raises(DependencyError, match=r"^after #999: no such task"):
            q.send_many([{"sender": "cli", "recipient": "bob", "type": "ok"},
                         {"sender": "cli", "recipient": "bob", "type": "t",
                          "after": [real, 999]}])
        assert q.list_tasks(agent="bob") == [] and q.get_task(real)["status"] == "pending"

    @pytest.mark.parametrize("after, says", [("41", "list of task ids"), ([0], "list of task"),
                                             ([True], "list of task ids")])
    def test_bad_after_values_are_one_line(self, after, says):
        q = self.make_queue()
        with pytest.raises(DependencyError, match=says):
            q.send("cli", "bob", "t", after=after)
        with pytest.raises(DependencyError, match="on_dependency_failure"):
            q.send("cli", "bob", "t", after=[1], on_dependency_failure="skip")

    def test_a_send_whose_chain_would_include_itself_is_refused(self):
        q = self.make_queue()
        first = q.send("cli", "alice", "a", dedupe_key="k")
        second = q.send("cli", "bob", "b", after=[first])
        third = q.send("cli", "carol", "c", after=[second])
        with pytest.raises(DependencyError, match=rf"^after #{third}: task #{first} .* chain: a cycle"):
            q.send("cli", "alice", "a", dedupe_key="k", after=[third])
        assert q.send("cli", "alice", "a", dedupe_key="k") == first  # no after: as before

    def test_a_waiting_task_counts_toward_max_queue_size_and_can_be_cancelled(self):
        q = self.make_queue(max_queue_size=2)
        parent = q.send("cli", "alice", "a")
        waiting = q.send("cli", "bob", "t", after=[parent])
        q.send("cli", "bob", "t")
        with pytest.raises(QueueFullError):
            q.send("cli", "bob", "t")
        assert q.cancel_task(waiting) == "waiting"
        q.send("cli", "bob", "t")
        assert q.stats()["bob"]["waiting"] == 0 and q.stats()["bob"]["cancelled"] == 1

    def test_follow_ups_may_wait_on_the_task_that_sends_them(self):
        q = self.make_queue()
        other = q.send("cli", "carol", "slow")
        [task] = q.claim("carol")
        work = q.send("cli", "alice", "w")
        [mine] = q.claim("alice")
        q.mark_completed(mine.id, follow_ups=[
            {"sender": "alice", "recipient": "bob", "type": "next", "after": [mine.id]},
            {"sender": "alice", "recipient": "bob", "type": "both", "after": [mine.id, other]}])
        by_type = {t["type"]: t for t in q.list_tasks(agent="bob")}
        assert by_type["next"]["status"] == "pending" and work == mine.id
        assert by_type["both"]["status"] == "waiting"
        assert q.waits_of([by_type["both"]["id"], by_type["next"]["id"]]) == {
            by_type["both"]["id"]: [other]}
        q.mark_completed(task.id)
        assert self.status(q, by_type["both"]["id"]) == "pending"

    def test_concurrent_completions_of_three_parents_release_the_child_once(self):
        """Three threads, each on its own queue (connection), complete one parent each at
        the same moment, many times over: the child is released every time, exactly once."""
        q = self.make_queue()
        for round_ in range(8):
            parents, child = self.fan_in(q)
            queues = [self.make_queue() for _ in range(3)]
            claimed = [q.claim("alice")[0] for _ in range(3)]
            start = threading.Barrier(3)

            def complete(queue: MessageQueue, task) -> None:
                start.wait()
                if round_ % 2:
                    queue.complete_and_claim(task.id, None, agent="alice")
                else:
                    queue.mark_completed(task.id, agent="alice")
            threads = [threading.Thread(target=complete, args=pair)
                       for pair in zip(queues, claimed)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            row = q.get_task(child)
            assert (row["status"], row["waiting_on"]) == ("pending", 0), round_
            assert [t.id for t in q.claim("bob")] == [child]

    # -- schedule slots -------------------------------------------------------------------
    def test_a_slot_is_taken_once_and_its_task_sent_with_it(self):
        q = self.make_queue()
        message = {"sender": "schedule", "recipient": "alice", "type": "daily", "content": {}}
        task_id = q.take_slot("alice", "daily", 1000.0, message)
        assert task_id and q.get_task(task_id)["type"] == "daily"
        assert q.take_slot("alice", "daily", 1000.0, message) is None
        assert q.take_slot("alice", "daily", 2000.0) == 0  # recorded, nothing sent
        assert q.schedule_slots() == {("alice", "daily"): 2000.0}
        assert len(q.list_tasks(agent="alice")) == 1

    def test_two_hosts_taking_the_same_slots_never_both_send(self):
        message = {"sender": "schedule", "recipient": "alice", "type": "daily"}
        hosts = [self.make_queue(), self.make_queue()]
        start = threading.Barrier(2)
        sent: list = []

        def watchdog(q: MessageQueue) -> None:
            start.wait()
            for slot in range(40):
                sent.append(q.take_slot("alice", "daily", float(slot), message))
        threads = [threading.Thread(target=watchdog, args=(h,)) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(1 for s in sent if s) == 40 and sent.count(None) == 40
        assert len(hosts[0].list_tasks(agent="alice", limit=1000)) == 40

    def test_a_full_queue_leaves_the_slot_free(self):
        q = self.make_queue(max_queue_size=1)
        q.send("cli", "alice", "x")
        with pytest.raises(QueueFullError):
            q.take_slot("alice", "daily", 5.0, {"sender": "schedule", "recipient": "alice",
                                                 "type": "daily"})
        assert q.schedule_slots() == {}

    def test_cleanup_keeps_each_entrys_latest_slot(self):
        q = self.make_queue()
        for slot in (10.0, 20.0, 30.0):
            q.take_slot("alice", "daily", slot)
        q.take_slot("bob", "weekly", 5.0)
        q.cleanup(0)
        assert q.schedule_slots() == {("alice", "daily"): 30.0, ("bob", "weekly"): 5.0}
        assert q.backend.fetchone("SELECT COUNT(*) FROM schedule_runs")[0] == 2

    # -- the wait-for graph ---------------------------------------------------------------
    def test_the_wait_graph_reads_unfinished_waits_and_running_tasks(self):
        q = self.make_queue()
        z = q.send("cli", "alice", "z")
        y = q.send("cli", "bob", "y", after=[z])
        [x_task] = q.claim("alice")  # alice runs z itself here; y waits on it
        graph = q.wait_graph()
        assert graph["waits"] == [(y, "bob", "waiting", z, "alice", "in_progress")]
        assert graph["running"] == {"alice": [z], "bob": []}
        assert q.report_cycle_once("#1>#2", "cycle", "alice -> bob -> alice")
        assert not q.report_cycle_once("#1>#2", "cycle", "again")
        assert [n["title"] for n in q.notifications()] == ["cycle"]
        assert x_task.id == z

    # -- schema 10 ------------------------------------------------------------------------
    @fresh_database
    def test_a_version_9_database_gains_dependencies_and_keeps_its_tasks(self):
        from coffee_team.queue.tables import SCHEMA_VERSION
        q = self.make_queue()
        kept = [q.send("cli", "alice", "old", {"n": n}) for n in range(3)]
        q.claim("alice")
        q.mark_completed(kept[0])
        pg = q.backend.folded
        with q.backend.write_transaction():  # what version 9 had: none of schema 10
            for table in ("task_deps", "schedule_runs", "wait_cycles"):
                q.backend.execute(f"DROP TABLE {table}")
            q.backend.execute("DROP TRIGGER tasks_dependents" + (" ON tasks" if pg else ""))
            for column in ("waiting_on", "dependents"):
                q.backend.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
            q.backend.execute("UPDATE schema_version SET version = 9")
        q.close()
        upgraded = self.make_queue()
        assert upgraded.backend.fetchone("SELECT MAX(version) FROM schema_version")[0] == \
            SCHEMA_VERSION
        assert [t["id"] for t in upgraded.list_tasks(agent="alice")] == kept[::-1]
        assert upgraded.stats()["alice"]["completed"] == 1  # count triggers still there
        child = upgraded.send("cli", "bob", "t", after=kept[1:])
        for _ in range(2):
            [task] = upgraded.claim("alice")
            upgraded.mark_completed(task.id)
        assert self.status(upgraded, child) == "pending"
        assert upgraded.stats()["alice"]["completed"] == 3
