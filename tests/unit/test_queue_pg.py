"""The shared queue contract against PostgreSQL.

Runs only when COFFEE_TEST_PG_URL is set, e.g.
postgresql://postgres@127.0.0.1:5432/test; the tests share one migrated schema, its data reset
before each (tests/pg_schema.py), and a test marked fresh_database gets a schema of its own.
"""
import os
import shutil
import uuid

import pytest

from tests.pg_schema import SharedSchema, schema_url
from tests.queue_approvals_contract import ApprovalsContract
from tests.queue_contract import QueueContract
from tests.queue_control_contract import ControlContract
from tests.queue_fused_contract import FusedContract
from tests.queue_listing_contract import ListingContract
from tests.queue_work_contract import WorkContract
from tests.queue_merges_contract import MergesContract
from tests.queue_instances_contract import InstancesContract

PG_URL = os.environ.get("COFFEE_TEST_PG_URL")

pytestmark = pytest.mark.skipif(not PG_URL, reason="set COFFEE_TEST_PG_URL to run PostgreSQL tests")


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        conn.autocommit = True
        conn.cursor().execute(sql)
    finally:
        conn.close()


SHARED = SharedSchema(PG_URL or "")


@pytest.fixture(scope="module", autouse=True)
def _drop_the_shared_schema():
    yield
    SHARED.drop()


class TestPostgresQueue(QueueContract, ListingContract, ControlContract, FusedContract,
                        WorkContract, ApprovalsContract, MergesContract, InstancesContract):
    def database_url(self) -> str:
        self._schema = None  # a schema of this test's own (fresh_database), dropped after it
        if not self.fresh_database:
            return SHARED.url()
        self._schema = "ct_" + uuid.uuid4().hex[:12]
        _admin(f"CREATE SCHEMA {self._schema}")
        return schema_url(PG_URL, self._schema)

    def cleanup_database(self) -> None:
        shutil.rmtree(self.wake_dir, ignore_errors=True)
        if self._schema is not None:
            _admin(f"DROP SCHEMA IF EXISTS {self._schema} CASCADE")
        elif SHARED.changed():
            pytest.fail("the test changed the schema the tests share: mark it "
                        "@fresh_database (tests/queue_contract.py)", pytrace=False)


def test_a_database_made_anew_under_the_same_url_is_another_database():
    """PostgreSQL has no file: its id tells a restored or remade database from the one a
    process opened (identity.py)."""
    from coffee_team.queue import MessageQueue, pg_backend
    from coffee_team.queue.identity import REPLACED
    schema = "ct_" + uuid.uuid4().hex[:12]
    _admin(f"CREATE SCHEMA {schema}")
    url = schema_url(PG_URL, schema)
    try:
        q = MessageQueue(url, agents=["a"])
        try:
            first = q.backend._opened.db_id
            assert first and q.check_file() is None
            with MessageQueue(url, agents=["a"]) as other:
                assert other.backend._opened.db_id == first  # the same database
            q.close()
            _admin(f"DROP SCHEMA {schema} CASCADE")
            _admin(f"CREATE SCHEMA {schema}")
            MessageQueue(url, agents=["a"]).close()  # made anew: another id
            assert q.check_file() is None  # asked again only after ID_CHECK_EVERY
            q.backend._looked = (q.backend._looked[0] - pg_backend.ID_CHECK_EVERY, None)
            problem = q.check_file()
            assert problem is not None and problem.verdict == REPLACED
        finally:
            q.close()
    finally:
        _admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
