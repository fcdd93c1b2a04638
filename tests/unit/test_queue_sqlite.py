"""The shared queue contract against SQLite, plus SQLite-only file checks."""
import os
import shutil
import tempfile

import pytest

from coffee_team.queue.factory import open_database
from tests.queue_approvals_contract import ApprovalsContract
from tests.queue_contract import QueueContract
from tests.queue_control_contract import ControlContract
from tests.queue_fused_contract import FusedContract
from tests.queue_listing_contract import ListingContract
from tests.queue_work_contract import WorkContract
from tests.queue_merges_contract import MergesContract
from tests.queue_instances_contract import InstancesContract


class TestSqliteQueue(QueueContract, ListingContract, ControlContract, FusedContract,
                      WorkContract, ApprovalsContract, MergesContract, InstancesContract):
    def database_url(self) -> str:
        self._tmp = tempfile.mkdtemp(prefix="ctq")
        return os.path.join(self._tmp, "db", "queue.db")

    def cleanup_database(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
        shutil.rmtree(self.wake_dir, ignore_errors=True)

    def test_database_file_is_private_and_in_wal_mode(self):
        q = self.make_queue()
        assert os.stat(self.url).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(self.url)).st_mode & 0o777 == 0o700
        assert q.backend.fetchone("PRAGMA journal_mode")[0] == "wal"
        assert q.backend.fetchone("PRAGMA synchronous")[0] == 1
        assert q.backend.fetchone("PRAGMA foreign_keys")[0] == 1
        assert q.backend.fetchone("PRAGMA busy_timeout")[0] == 5000

    def test_sqlite_url_forms(self):
        db = open_database("sqlite:///" + self.url, busy_timeout_ms=1234)
        assert db.database == self.url  # sqlite:////abs/path -> /abs/path
        db.connect()
        assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 1234
        db.close()

    def test_claim_uses_the_covering_index(self):
        q = self.make_queue()
        plan = q.backend.fetchall(
            "EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE recipient = 'a' AND status = 'pending'"
            " AND run_after <= 5 ORDER BY priority, id LIMIT 1")
        detail = " ".join(str(r[-1]) for r in plan)
        assert "COVERING INDEX" in detail and "TEMP B-TREE" not in detail

    def test_stats_read_counters_and_the_claim_index_never_the_whole_table(self):
        """Issue 18, finding 11: coffee.getQueueStats ran a GROUP BY over every task row inside
        supervisord (0.72 s at 1.2 million rows). Every step of its plan is now a search."""
        from coffee_team.queue import sql
        q = self.make_queue()
        for statement in (sql.FINISHED_COUNTS, sql.LIVE_COUNTS):
            plan = [str(row[-1]) for row in q.backend.fetchall("EXPLAIN QUERY PLAN " + statement)]
            tasks_steps = [step for step in plan if "tasks" in step.split()]
            assert all(step.startswith("SEARCH") for step in tasks_steps), plan
            assert not any(step.startswith("SCAN tasks") for step in plan), plan
        live_plan = " ".join(str(row[-1]) for row in q.backend.fetchall(
            "EXPLAIN QUERY PLAN " + sql.LIVE_COUNTS))
        assert "INDEX tasks_recipient_status_priority_id_run_after" in live_plan, live_plan

    def test_triggers_test_states_by_comparisons_not_in_lists(self):
        """For an IN list of more than two constants SQLite builds a temporary index every
        time a trigger fires (~3 µs, and every completion and claim fires three): the
        triggers compare instead (schema 18)."""
        import re
        q = self.make_queue()
        triggers = dict(q.backend.fetchall(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        assert {"tasks_completed", "tasks_count_update", "tasks_count_delete",
                "tasks_count_insert", "tasks_dependents"} <= set(triggers)
        for name, text in triggers.items():
            assert not re.search(r"\bIN \((?:'[^']*', ){2,}'", text), name

    def test_an_agent_claims_one_task_without_a_temporary_table(self):
        """id = (SELECT ...) for one task: SQLite reads the subquery once; id IN (SELECT ...)
        fills a temporary table first."""
        from coffee_team.queue import sql_sqlite
        q = self.make_queue()
        for statement, params in ((sql_sqlite.CLAIM_ONE, 6), (sql_sqlite.CLAIM_READY_ONE, 10),
                                  (sql_sqlite.COMPLETE_AND_CLAIM, 5)):
            plan = " ".join(str(r[-1]) for r in q.backend.fetchall(
                "EXPLAIN QUERY PLAN " + statement, (None,) * params))
            assert "LIST SUBQUERY" not in plan and "SCALAR SUBQUERY" in plan, plan
            assert "SCAN tasks" not in plan, plan



def test_busy_is_told_by_the_error_code_not_the_message(tmp_path):
    import sqlite3

    import peewee

    from coffee_team.queue.db import is_busy
    path = str(tmp_path / "busy.db")
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    db = peewee.SqliteDatabase(path, timeout=0)
    with pytest.raises(peewee.OperationalError) as locked:
        db.execute_sql("INSERT INTO t VALUES (1)")
    assert is_busy(locked.value)
    holder.execute("ROLLBACK")
    with pytest.raises(peewee.OperationalError) as missing:
        db.execute_sql("SELECT * FROM no_such_table")
    assert not is_busy(missing.value)
    assert not is_busy(ValueError("database is locked"))  # words alone decide nothing
    holder.close()
    db.close()


def test_busy_is_told_by_the_message_where_sqlite3_has_no_codes(monkeypatch):
    """Before Python 3.11 sqlite3's errors carry no code: the message is all there is."""
    import sqlite3

    from coffee_team.queue import db
    monkeypatch.setattr(db, "_SQLITE_CODES", False)
    assert db.is_busy(sqlite3.OperationalError("database is locked"))
    assert not db.is_busy(sqlite3.OperationalError("no such table: t"))
    assert not db.is_busy(ValueError("database is locked"))
    monkeypatch.setattr(db, "_SQLITE_CODES", True)
    assert not db.is_busy(sqlite3.OperationalError("database is locked"))  # no code: not busy


def test_a_nested_transaction_rolled_back_by_sqlite_lets_the_error_through(tmp_path):
    """SQLite may roll back the whole transaction itself (SQLITE_FULL, an interrupt): the
    savepoint is gone, and leaving the nested block must raise the real error, not
    'no such savepoint'; the connection stays usable."""
    import sqlite3

    from coffee_team.queue.sqlite_db import SqliteDatabase
    (tmp_path / "n.db").touch()  # connections never make a file (queue/files.py)
    db = SqliteDatabase(str(tmp_path / "n.db"), (), timeout=1)
    db.execute_sql("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.IntegrityError, match="real"):
        with db.atomic("IMMEDIATE"):
            with db.atomic():
                db.execute_sql("ROLLBACK")  # what SQLite does on its own after SQLITE_FULL
                raise sqlite3.IntegrityError("the real error")
    with db.atomic("IMMEDIATE"):
        db.execute_sql("INSERT INTO t VALUES (1)")
    assert db.execute_sql("SELECT COUNT(*) FROM t").fetchone() == (1,)
    db.close()


def test_a_schema_upgrade_that_finds_the_file_busy_raises_sqlite3s_error(tmp_path):
    """An agent's durable() retries sqlite3 errors; peewee's own copy of one (what the
    upgrade's ORM raises) would crash it instead, since the agent never loads peewee."""
    import sqlite3

    from coffee_team.queue.db import is_busy
    from coffee_team.queue.factory import open_database
    from coffee_team.queue.migrate import migrate
    path = str(tmp_path / "busy.db")
    db = open_database(path, busy_timeout_ms=0)
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError) as busy:
            migrate(db)
        assert type(busy.value).__module__ == "sqlite3" and is_busy(busy.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    migrate(db)  # once the file is free, the same call creates the schema
    db.close()
