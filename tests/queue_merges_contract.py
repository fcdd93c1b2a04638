"""The review and merge queue's rows (queue/merges.py) against every backend: each change is
atomic with the task it completes and the tasks it sends, an item is in exactly one state,
and at most one item per target is merging.

Mixed into the backend test classes next to QueueContract (make_queue() on a fresh database
and a FakeClock).
"""
from __future__ import annotations

import pytest

from coffee_team.queue import ContentError, QueueError

AGENTS = ("dev", "dev2", "rev", "other")
HEAD, HEAD2, BASE = "b" * 40, "c" * 40, "a" * 40


def item(task_id, author="dev", target="roadmap", head=HEAD, reviewer="rev", host=""):
    return {"author": author, "host": host, "branch": f"agents/{author}", "target": target,
            "base": BASE, "head": head, "task_id": task_id, "reviewer": reviewer}


def review(author="dev"):
    return {"sender": author, "recipient": "rev", "type": "review_requested",
            "content": {"range": "a..b"}}


class MergesContract:
    def merges_queue(self, **kw):
        return self.make_queue(agents=AGENTS, **kw)

    def requested(self, q, author="dev", **kw):
        """An item waiting for review, requested by a task of ``author``; (item id, review task
        id or None)."""
        q.send("cli", author, "work")
        [task] = q.claim(author)
        completed, item_id = q.request_review(task.id, {"ok": 1}, agent=author,
                                              item=item(task.id, author, **kw),
                                              review=review(author) if kw.get("reviewer", "rev")
                                              else None)
        assert completed and item_id is not None
        return item_id

    def approved(self, q, author="dev", **kw):
        item_id = self.requested(q, author, **kw)
        assert q.decide_review(item_id, True, by="person") == (True, True)
        return item_id

    def test_a_review_request_completes_the_task_and_sends_the_review_in_one_go(self):
        q = self.merges_queue()
        q.send("cli", "dev", "work")
        [task] = q.claim("dev")
        completed, item_id = q.request_review(
            task.id, {"ok": 1}, agent="dev",
            follow_ups=[{"sender": "dev", "recipient": "other", "type": "x"}],
            item=item(task.id), review=review())
        assert completed
        assert q.get_task(task.id)["status"] == "completed"
        [rev_task] = q.claim("rev")
        assert rev_task.type == "review_requested" and rev_task.sender == "dev"
        assert rev_task.content == {"range": "a..b", "merge_item": item_id}
        assert [t.type for t in q.claim("other")] == ["x"]
        row = q.merge_item(item_id)
        assert (row["state"], row["author"], row["head"], row["reviewer"], row["task_id"]) == (
            "waiting_review", "dev", HEAD, "rev", task.id)
        assert q.live_merges("dev") == 1 and q.live_merges("dev2") == 0
        assert [e["kind"] for e in q.events(agent="dev")] == ["review_requested"]

    def test_a_task_no_longer_held_requests_nothing(self):
        q = self.merges_queue()
        task_id = q.send("cli", "dev", "work")
        q.claim("dev")
        q.cancel_task(task_id)
        assert q.request_review(task_id, None, agent="dev", item=item(task_id),
                                review=review()) == (False, None)
        assert q.merge_items() == [] and q.claim("rev") == []

    def test_a_bad_review_message_writes_nothing(self):
        q = self.merges_queue()
        q.send("cli", "dev", "work")
        [task] = q.claim("dev")
        with pytest.raises(QueueError):
            q.request_review(task.id, None, agent="dev", item=item(task.id),
                             review={**review(), "recipient": "nobody"})
        with pytest.raises(ContentError):
            q.request_review(task.id, None, agent="dev", item={"author": "dev"}, review=None)
        assert q.get_task(task.id)["status"] == "in_progress" and q.merge_items() == []

    def test_a_person_review_sends_no_task(self):
        q = self.merges_queue()
        item_id = self.requested(q, reviewer=None)
        assert q.merge_item(item_id)["reviewer"] is None and q.claim("rev") == []

    def test_a_verdict_completes_the_review_task_and_decides_once(self):
        q = self.merges_queue()
        item_id = self.requested(q)
        [task] = q.claim("rev")
        back = {"sender": "merge_queue", "recipient": "dev", "type": "merge_failed",
                "content": {"merge_item": item_id}}
        assert q.decide_review(item_id, False, by="rev", comments="rename it", messages=[back],
                               task=(task.id, {"verdict": "request_changes"}, "rev", [])) == (
            True, True)
        row = q.merge_item(item_id)
        assert (row["state"], row["decided_by"], row["comments"]) == ("failed", "rev",
                                                                      "rename it")
        assert row["reason"] == "changes requested by rev: rename it"
        assert [t.type for t in q.claim("dev")] == ["merge_failed"]
        # a second verdict finds it decided: nothing moves, nothing is sent
        assert q.decide_review(item_id, True, by="person", messages=[back]) == (True, False)
        assert q.merge_item(item_id)["state"] == "failed" and q.claim("dev") == []
        assert q.get_task(task.id)["status"] == "completed"

    def test_a_verdict_on_a_task_taken_away_still_decides(self):
        q = self.merges_queue()
        item_id = self.requested(q)
        [task] = q.claim("rev")
        q.cancel_task(task.id)
        assert q.decide_review(item_id, True, by="rev", task=(task.id, None, "rev", [])) == (
            False, True)
        assert q.merge_item(item_id)["state"] == "approved"

    def test_one_merge_at_a_time_per_target_oldest_first(self):
        q = self.merges_queue()
        first = self.approved(q, "dev")
        second = self.approved(q, "dev2")
        elsewhere = self.approved(q, "dev2", target="main")
        assert q.merge_due("")
        begun = q.begin_merge("")
        assert begun["id"] == first and begun["state"] == "checking" and begun["attempts"] == 1
        # the roadmap is busy: the next one is the other target's
        assert q.begin_merge("")["id"] == elsewhere
        assert q.begin_merge("") is None
        assert q.finish_merge(first, "merged", merged_head=HEAD)
        assert q.begin_merge("")["id"] == second
        assert not q.merge_due("")

    def test_items_of_another_host_are_not_this_hosts_merges(self):
        q = self.merges_queue()
        self.approved(q, host="b")
        assert not q.merge_due("a") and q.begin_merge("a") is None
        assert q.begin_merge("b") is not None

    def test_the_database_refuses_a_second_merge_of_one_target(self):
        q = self.merges_queue()
        one, two = self.approved(q), self.approved(q, "dev2")
        q.begin_merge("")
        with pytest.raises(Exception, match="(?i)unique|duplicate key"):
            with q.backend.write_transaction():
                q.backend.execute("UPDATE merge_items SET state = 'checking' WHERE id = ?",
                                  (two,))
        assert [r["state"] for r in q.merge_items()] == ["approved", "checking"]
        assert one != two

    def test_finishing_moves_only_a_merge_under_way_and_sends_with_it(self):
        q = self.merges_queue()
        item_id = self.approved(q)
        broadcast = {"sender": "merge_queue", "recipient": "all", "type": "branch_updated"}
        assert not q.finish_merge(item_id, "merged", messages=[broadcast])  # not begun
        assert q.claim("other") == []
        q.begin_merge("")
        assert q.finish_merge(item_id, "merged", merged_head=HEAD2, output="ok",
                              messages=[broadcast])
        row = q.merge_item(item_id)
        assert (row["state"], row["merged_head"], row["output"]) == ("merged", HEAD2, "ok")
        got = {name: [t.type for t in q.claim(name, 10)].count("branch_updated")
               for name in AGENTS}
        assert got == dict.fromkeys(AGENTS, 1)
        assert not q.finish_merge(item_id, "fail")  # merged is final
        assert q.live_merges("dev") == 0
        assert [e["kind"] for e in q.events(agent="dev")][-1] == "merged"

    def test_a_failed_merge_keeps_its_reason_and_the_end_of_its_output(self):
        q = self.merges_queue()
        item_id = self.approved(q)
        q.begin_merge("")
        assert q.finish_merge(item_id, "fail", reason="check failed: make: exit 2",
                              output="x" * 100_000)
        row = q.merge_item(item_id)
        assert row["state"] == "failed" and row["reason"] == "check failed: make: exit 2"
        assert len(row["output"]) == 64 * 1024 and row["output"].endswith("x")
        assert [r["id"] for r in q.merge_items(state="failed")] == [item_id]
        with pytest.raises(ContentError):
            q.merge_items(state="lost")

    def test_a_released_merge_waits_until_it_is_due(self):
        q = self.merges_queue()
        item_id = self.approved(q)
        q.begin_merge("")
        assert q.finish_merge(item_id, "release", reason="blocked",
                              retry_at=self.clock.now + 60)
        assert q.merge_item(item_id)["state"] == "approved"
        assert not q.merge_due("") and q.begin_merge("") is None
        self.clock.advance(61)
        assert q.begin_merge("")["attempts"] == 2

    def test_a_new_merger_takes_over_what_its_predecessor_left_under_way(self):
        q = self.merges_queue()
        mine, theirs = self.approved(q), self.approved(q, "dev2", host="b")
        q.begin_merge("")
        q.begin_merge("b")
        assert q.release_merges("") == 1
        assert [q.merge_item(i)["state"] for i in (mine, theirs)] == ["approved", "checking"]

    # -- a person reviews: an approval of kind review --------------------------------------
    def person_asks(self, q):
        q.send("cli", "dev", "work")
        [task] = q.claim("dev")
        back = {"sender": "merge_queue", "recipient": "dev", "type": "merge_failed",
                "content": {"reason": "changes_requested", "merge_item": None}}
        _, item_id = q.request_review(
            task.id, None, agent="dev", item=item(task.id, reviewer=None), review=None,
            ask={"subject": "review agents/dev aaaa..bbbb (1 commit) for roadmap",
                 "request": {"commits": ["bbbb x"], "on_reject": back}})
        [approval] = q.list_approvals("pending")
        return item_id, approval

    def test_a_person_review_is_an_approval_that_names_the_item(self):
        q = self.merges_queue()
        item_id, approval = self.person_asks(q)
        assert (approval["kind"], approval["agent"]) == ("review", "dev")
        assert approval["request"]["merge_item"] == item_id
        assert approval["subject"].startswith("review agents/dev")
        assert q.claim("rev") == []  # no task for anyone
        decided = q.decide_approval(approval["id"], True, by="alice")
        assert decided["status"] == "approved"
        row = q.merge_item(item_id)
        assert (row["state"], row["decided_by"]) == ("approved", "alice")
        assert q.begin_merge("")["id"] == item_id

    def test_a_person_denying_a_review_sends_their_reason_back_to_the_author(self):
        from coffee_team.errors import ApprovalDecided
        q = self.merges_queue()
        item_id, approval = self.person_asks(q)
        q.decide_approval(approval["id"], False, by="alice", reason="split it in two")
        row = q.merge_item(item_id)
        assert (row["state"], row["comments"]) == ("failed", "split it in two")
        assert row["reason"] == "changes requested by alice: split it in two"
        [back] = [t for t in q.claim("dev", 10) if t.type == "merge_failed"]
        assert back.content == {"reason": "changes_requested", "merge_item": item_id,
                                "detail": "split it in two"}
        with pytest.raises(ApprovalDecided):  # the first decision stands
            q.decide_approval(approval["id"], True, by="bob")
        assert q.merge_item(item_id)["state"] == "failed"
