"""Contract tests for a person's approvals (queue/approvals.py) and the awaiting_approval
state, mixed into QueueContract so they run against SQLite and PostgreSQL alike, on a
FakeClock."""
from __future__ import annotations

import pytest

from coffee_team.errors import (ApprovalDecided, ApprovalNotFound, ContentError,
                                DependencyError, QueueFullError, TaskStateError)
from coffee_team.queue.tables import SCHEMA_VERSION
from tests.queue_contract import fresh_database

GATES = {"alice": ("deploy",)}

# The tasks table of schema 10 (before awaiting_approval and sent_from), {pk}/{dbl} per dialect.
V10_TASKS_DDL = (
    "DROP TABLE tasks",
    "CREATE TABLE tasks (id {pk}, sender VARCHAR(100) NOT NULL, recipient VARCHAR(100) NOT NULL,"
    " type VARCHAR(100) NOT NULL, content TEXT NOT NULL, priority INTEGER NOT NULL,"
    " created_at {dbl} NOT NULL, completed_at {dbl}, status VARCHAR(20) NOT NULL"
    " CHECK (status IN ('waiting', 'pending', 'in_progress', 'completed', 'failed',"
    " 'cancelled')), claimed_by VARCHAR(100), claimed_at {dbl}, lease_expires_at {dbl},"
    " attempts INTEGER NOT NULL, failures INTEGER NOT NULL DEFAULT 0, run_after {dbl} NOT NULL"
    " DEFAULT 0, escalated_at {dbl}, errors TEXT, dedupe_key VARCHAR(200), error TEXT,"
    " result TEXT, traceparent TEXT, waiting_on INTEGER NOT NULL DEFAULT 0, dependents INTEGER"
    " NOT NULL DEFAULT 0)",
    "CREATE INDEX tasks_recipient_status_priority_id_run_after ON tasks"
    " (recipient, status, priority, id, run_after)",
    "CREATE UNIQUE INDEX tasks_live_dedupe_key ON tasks (recipient, dedupe_key)"
    " WHERE dedupe_key IS NOT NULL AND status IN ('waiting', 'pending', 'in_progress')",
    "INSERT INTO tasks (id, sender, recipient, type, content, priority, created_at, status,"
    " attempts, run_after, dedupe_key) VALUES (41, 'cli', 'alice', 'old', '{{\"kept\": 1}}', 5,"
    " 100, 'pending', 0, 100, 'k'), (42, 'cli', 'bob', 'old', '{{}}', 5, 100, 'pending', 0, 100,"
    " NULL)",
    "DROP TABLE approvals",
    "UPDATE schema_version SET version = 10",
)


class ApprovalsContract:
    # -- requests and decisions -----------------------------------------------------------
    def test_a_request_is_one_row_and_one_silent_notification_until_a_person_decides(self):
        q = self.make_queue()
        asked = q.request_approval("tool", "alice", "Bash: git push origin main",
                                   {"tool_name": "Bash", "input": {"command": "git push"}},
                                   task_id=7, timeout=3600)
        row = q.approval(asked)
        assert (row["kind"], row["agent"], row["task_id"], row["status"], row["expires_at"]) == (
            "tool", "alice", 7, "pending", self.clock.now + 3600)
        assert row["request"]["input"] == {"command": "git push"}
        [note] = q.notifications()
        assert (note["level"], note["agent"], note["sound"]) == ("WARNING", "alice", False)
        assert f"approval #{asked}" in note["title"] and "git push" in note["title"]
        assert f"coffee-team approve {asked}" in note["message"]
        assert [a["id"] for a in q.list_approvals("pending")] == [asked]
        assert q.approval_status(asked) == ("pending", None, None)

        self.clock.advance(30)
        decided = q.decide_approval(asked, True, "ana", "looks fine")
        assert (decided["status"], decided["decided_by"], decided["decided_at"],
                decided["reason"]) == ("approved", "ana", self.clock.now, "looks fine")
        assert q.approval_status(asked) == ("approved", "ana", "looks fine")
        assert q.notifications(unacked_only=True) == []  # the notification is answered
        assert q.list_approvals("pending") == []

    def test_the_first_decision_stands(self):
        q = self.make_queue()
        asked = q.request_approval("tool", "alice", "Write /etc/hosts")
        q.decide_approval(asked, False, "ana", "not there")
        with pytest.raises(ApprovalDecided, match=f"approval {asked} was already denied by ana "
                                                  f"at .*: not there"):
            q.decide_approval(asked, True, "bob")
        assert q.approval(asked)["decided_by"] == "ana"
        with pytest.raises(ApprovalNotFound):
            q.decide_approval(asked + 100, True, "bob")
        with pytest.raises(ContentError):
            q.decide_approval(asked, True, "")  # who decides is always known

    @pytest.mark.parametrize("on_timeout, status", [("deny", "denied"), ("allow", "approved")])
    def test_a_timeout_decides_as_on_timeout_says(self, on_timeout, status):
        q = self.make_queue()
        asked = q.request_approval("tool", "alice", "Bash: make", timeout=60,
                                   on_timeout=on_timeout)
        self.clock.advance(59)
        assert q.expire_approvals() == [] and q.approval(asked)["status"] == "pending"
        self.clock.advance(1)
        [row] = q.list_approvals()  # a listing decides what is due first
        assert (row["status"], row["decided_by"]) == (status, "timeout")
        assert "no decision within 60 s" in row["reason"]
        with pytest.raises(ApprovalDecided, match=f"already {status} by timeout"):
            q.decide_approval(asked, True, "ana")

    def test_a_reader_that_writes_nothing_leaves_out_what_timed_out(self):
        q = self.make_queue()
        late = q.request_approval("tool", "alice", "Bash: a", timeout=10)
        waits = q.request_approval("task", "alice", "task #1 deploy")
        self.clock.advance(11)
        assert [a["id"] for a in q.list_approvals("pending", expire=False)] == [waits]
        assert q.approval(late)["status"] == "pending"  # nothing written
        assert [a["id"] for a in q.list_approvals("pending")] == [waits]
        assert q.approval(late)["status"] == "denied"  # a listing that may write decides it

    def test_a_run_that_ended_withdraws_its_calls_still_waiting(self):
        q = self.make_queue()
        mine = q.request_approval("tool", "alice", "Bash: a")
        done = q.request_approval("tool", "alice", "Bash: b")
        other = q.request_approval("tool", "bob", "Bash: c")
        q.decide_approval(done, True, "ana")
        assert q.withdraw_approvals("alice", "the run ended") == [mine]
        assert [(q.approval(i)["status"], q.approval(i)["decided_by"]) for i in (mine, done, other)
                ] == [("cancelled", "coffee-team"), ("approved", "ana"), ("pending", None)]
        assert q.withdraw_approvals("alice", "again") == []

    # -- tasks of an approve_before type ---------------------------------------------------
    def test_a_gated_task_waits_for_a_person_then_runs(self):
        q = self.make_queue(approve_before=GATES)
        held = q.send("cli", "alice", "deploy", {"to": "prod"}, dedupe_key="d1")
        plain = q.send("cli", "alice", "report")
        assert q.get_task(held)["status"] == "awaiting_approval"
        assert q.send("cli", "alice", "deploy", dedupe_key="d1") == held  # still live
        assert [t.id for t in q.claim("alice", limit=5)] == [plain]
        assert not q.has_work("alice") and q.stats()["alice"]["awaiting_approval"] == 1
        [request] = q.list_approvals("pending")
        assert (request["kind"], request["task_id"], request["agent"]) == ("task", held, "alice")
        assert request["expires_at"] is None  # a task waits until someone decides
        assert f"task #{held} deploy from cli" in request["subject"]

        q.decide_approval(request["id"], True, "ana")
        assert q.get_task(held)["status"] == "pending"
        assert q.has_work("alice")
        assert [t.id for t in q.claim("alice")] == [held]

    def test_a_denied_task_is_cancelled_with_the_reason_and_can_be_retried(self):
        q = self.make_queue(approve_before=GATES)
        held = q.send("cli", "alice", "deploy")
        [request] = q.list_approvals("pending")
        q.decide_approval(request["id"], False, "ana", "not on a Friday")
        task = q.get_task(held)
        assert (task["status"], task["error"]) == ("cancelled", "denied by ana: not on a Friday")
        assert q.claim("alice") == [] and q.stats()["alice"]["cancelled"] == 1
        assert q.retry_task(held) == "cancelled"  # a person may still run it
        assert [t.id for t in q.claim("alice")] == [held]

    def test_cancelling_a_gated_task_withdraws_its_request(self):
        q = self.make_queue(approve_before=GATES)
        held = q.send("cli", "alice", "deploy")
        assert q.cancel_task(held) == "awaiting_approval"
        [request] = q.list_approvals()
        assert (request["status"], request["reason"]) == ("cancelled", "the task was cancelled")
        with pytest.raises(ApprovalDecided):
            q.decide_approval(request["id"], True, "ana")
        assert q.get_task(held)["status"] == "cancelled"
        with pytest.raises(TaskStateError):
            q.cancel_task(held)

    def test_batches_and_follow_ups_are_held_too(self):
        q = self.make_queue(approve_before=GATES)
        ids = q.send_many([{"sender": "cli", "recipient": "alice", "type": "deploy"},
                           {"sender": "cli", "recipient": "bob", "type": "deploy"}])
        assert [q.get_task(i)["status"] for i in ids] == ["awaiting_approval", "pending"]
        parent = q.send("cli", "bob", "build")
        [task] = q.claim("bob")
        assert task.id == ids[1]
        q.mark_completed(task.id, follow_ups=[{"sender": "bob", "recipient": "alice",
                                               "type": "deploy"}])
        assert len(q.list_approvals("pending")) == 2
        assert parent  # untouched: pending for bob

    def test_a_held_task_counts_against_its_recipients_queue_until_denied(self):
        q = self.make_queue(approve_before=GATES, max_queue_size=2)
        held = q.send("cli", "alice", "deploy")
        q.send("cli", "alice", "report")
        with pytest.raises(QueueFullError):  # the held one takes a place, as a waiting one
            q.send("cli", "alice", "report")
        [request] = q.list_approvals("pending")
        q.decide_approval(request["id"], False, "ana")
        q.send("cli", "alice", "report")  # the denied one gave its place back
        assert q.get_task(held)["status"] == "cancelled"

    def test_a_gated_type_is_not_sent_after_other_tasks(self):
        q = self.make_queue(approve_before=GATES)
        parent = q.send("cli", "bob", "build")
        with pytest.raises(DependencyError, match="deploy tasks of alice wait for a person's "
                                                  "approval"):
            q.send("cli", "alice", "deploy", after=[parent])
        assert q.list_approvals() == [] and len(q.list_tasks()) == 1  # nothing sent

    # -- sent_from -------------------------------------------------------------------------
    def test_a_send_names_the_task_whose_run_sent_it(self):
        q = self.make_queue()
        parent = q.send("cli", "alice", "plan")
        child = q.send("alice", "bob", "build", sent_from=parent)
        assert q.get_task(child)["sent_from"] == parent
        assert q.get_task(parent)["sent_from"] is None

    # -- schema ----------------------------------------------------------------------------
    @fresh_database
    def test_a_version_10_tasks_table_gains_the_new_state_and_sent_from_in_place(self):
        from coffee_team.queue.factory import is_postgres
        q = self.make_queue()
        pg = is_postgres(q.db)
        kinds = {"pk": "SERIAL PRIMARY KEY" if pg else "INTEGER NOT NULL PRIMARY KEY",
                 "dbl": "DOUBLE PRECISION" if pg else "REAL"}
        with q.db.atomic():
            for statement in V10_TASKS_DDL:
                q.db.execute_sql(statement.format(**kinds))
            if pg:  # a version-10 table has its triggers (DROP TABLE took them) and its ids in
                for statement in (*q.backend.task_count_triggers,  # its sequence
                                  *q.backend.dependency_triggers):
                    q.db.execute_sql(statement)
                q.db.execute_sql("SELECT setval('tasks_id_seq', 42)")
        q.close()
        upgraded = self.make_queue(approve_before=GATES)
        assert upgraded.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)]
        old = upgraded.get_task(41)
        assert (old["content"], old["status"], old["sent_from"]) == ({"kept": 1}, "pending", None)
        assert upgraded.send("cli", "alice", "old", dedupe_key="k") == 41  # the index is back
        held = upgraded.send("cli", "alice", "deploy", sent_from=41)
        assert held > 42 and upgraded.get_task(held)["status"] == "awaiting_approval"
        child = upgraded.send("cli", "bob", "after", after=[42])
        [task] = upgraded.claim("bob")
        upgraded.mark_completed(task.id)  # the count and dependency triggers work on it
        assert upgraded.stats()["bob"]["completed"] == 1
        assert upgraded.get_task(child)["status"] == "pending"  # released by its parent
