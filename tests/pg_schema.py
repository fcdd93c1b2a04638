"""One migrated PostgreSQL schema shared by the queue contract tests (test_queue_pg.py), its
data reset before each test: creating, migrating and dropping a schema per test cost ~0.5 s of
DDL each (194 tests), emptying 24 small tables costs a few ms.

Each test still starts from what a fresh, migrated schema holds: every table emptied (tasks
first, so its delete trigger leaves nothing behind in the counts), the rows the migration wrote
(schema_version, database_identity) put back, every sequence restarted. DELETE, not TRUNCATE:
TRUNCATE makes new files for 24 tables and their indexes, ~0.4 s. A test that changes the
schema itself (an upgrade from an older version, or the migration of an empty schema) takes a
schema of its own (queue_contract.fresh_database); one that changes the shared schema without
saying so fails, and the schema is made anew for the next test.
"""
from __future__ import annotations

import uuid
from typing import Any, Optional
from urllib.parse import quote

# What makes the schema what it is, one line each, sorted: relations (tables, indexes,
# sequences), columns with types, defaults and positions, constraints, indexes, triggers and
# the functions they run. Object ids are left out (the same definition is the same schema).
_FINGERPRINT = """
SELECT md5(coalesce(string_agg(part, E'\\n' ORDER BY part), '')) FROM (
  SELECT format('rel %%s %%s', c.relname, c.relkind) FROM pg_class c
   WHERE c.relnamespace = %(ns)s::regnamespace
  UNION ALL
  SELECT format('col %%s.%%s %%s %%s %%s %%s', c.relname, a.attname, a.attnum,
                format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relnamespace = %(ns)s::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
   WHERE connamespace = %(ns)s::regnamespace
  UNION ALL
  SELECT 'idx ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = %(ns)s::regnamespace
  UNION ALL
  SELECT 'trg ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
   WHERE c.relnamespace = %(ns)s::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT 'fn ' || p.proname || ' ' || md5(p.prosrc) FROM pg_proc p
   WHERE p.pronamespace = %(ns)s::regnamespace
) AS parts(part)
"""


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote('-csearch_path=' + schema)}"


class SharedSchema:
    """Made and migrated at its first use, dropped by ``drop()`` (the test module's end)."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self._conn: Any = None
        self.name: Optional[str] = None
        self._reset = ""
        self._fingerprint = ""

    def _run(self, statement: str, params: Any = None) -> list:
        """One transaction on the module's own connection (rolled back if it fails)."""
        import psycopg2
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.base_url)
        with self._conn, self._conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def url(self) -> str:
        """The shared schema's URL, its data as a freshly migrated schema has it."""
        if self.name is None:
            self._make()
        else:
            self._run(self._reset)
        return schema_url(self.base_url, self.name)

    def changed(self) -> bool:
        """Whether the schema's definition is no longer the migrated one (then dropped: the
        next test makes it anew)."""
        if self.name is None:
            return False
        if self._run(_FINGERPRINT, {"ns": self.name}) == [(self._fingerprint,)]:
            return False
        self.drop()
        return True

    def drop(self) -> None:
        if self.name is not None:
            self._run(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
            self.name = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _make(self) -> None:
        from coffee_team.queue import MessageQueue
        name = "ct_shared_" + uuid.uuid4().hex[:12]
        self._run(f"CREATE SCHEMA {name}")
        self.name = name
        MessageQueue(schema_url(self.base_url, name)).close()  # migrates
        # tasks first: its delete trigger counts finished rows into task_counts, emptied after
        tables = sorted((t for (t,) in self._run(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (name,))),
            key=lambda t: (t != "tasks", t))
        # the triggers' functions name their tables without the schema
        statements = [f"SET LOCAL search_path TO {name}"]
        statements += [f"DELETE FROM {table}" for table in tables]
        with self._conn.cursor() as cur:
            for table in tables:  # what the migration wrote (its version, the database's id)
                cur.execute(f"SELECT * FROM {name}.{table}")
                statements += [cur.mogrify(f"INSERT INTO {table} VALUES %s", (row,)).decode()
                               for row in cur.fetchall()]
        self._conn.rollback()
        statements += [f"ALTER SEQUENCE {seq} RESTART" for (seq,) in self._run(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = %s", (name,))]
        self._reset = ";\n".join(statements)
        (self._fingerprint,), = self._run(_FINGERPRINT, {"ns": name})
