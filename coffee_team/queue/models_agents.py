"""Peewee models of what the queue keeps per agent beside its tasks: the CLI session an llm
agent resumes, its tasks that failed for good (for ``status``), and the review and merge
queue of its commits. Apart from models.py (at its size limit); migrate.py creates them with
the rest (``AGENT_MODELS``)."""
from __future__ import annotations

from peewee import (SQL, AutoField, BigIntegerField, BooleanField, CharField, CompositeKey,
                    DoubleField, IntegerField, TextField)

from coffee_team.queue.models import BaseModel
from coffee_team.queue.tables import MERGE_STATE_CHECK


class AgentSession(BaseModel):
    """The CLI session an llm agent with ``session: keep`` resumes, per session key: the
    rendered ``session_key`` template (e.g. the spec id), '' when the agent sets none."""
    agent = CharField(max_length=100)
    session_key = CharField(max_length=200, default="")
    session_id = TextField()
    updated_at = DoubleField()

    class Meta:
        table_name = "llm_session"
        primary_key = CompositeKey("agent", "session_key")


class AgentFailure(BaseModel):
    """An agent's latest task that failed for good (no retry left), for status's "last failed
    #12 4m ago: timed out after 600s"; written with the failure (failures.py)."""
    agent = CharField(max_length=100, primary_key=True)
    task_id = BigIntegerField()
    task_type = CharField(max_length=100)
    error = TextField(default="")
    failed_at = DoubleField()

    class Meta:
        table_name = "agent_failure"


class FailureCount(BaseModel):
    """An agent's tasks that failed for good, per clock hour (``hour`` = epoch seconds // 3600):
    ``status`` adds up the last 24 rows of an agent instead of reading the tasks table; older
    rows are removed as new failures come."""
    agent = CharField(max_length=100)
    hour = IntegerField()
    n = IntegerField(default=0)

    class Meta:
        table_name = "failure_count"
        primary_key = CompositeKey("agent", "hour")


class MergeItem(BaseModel):
    """One agent branch's reviewed commits on their way into a target branch (schema 13):
    ``base..head`` of ``branch`` (the commits ``head`` has that ``target`` had not), asked for
    by the task ``task_id`` of ``author``. ``state`` is exactly one of MERGE_STATES; every
    change is one UPDATE naming the state it expects (merges.py). At most one item per
    (host, target) is ``checking``: the partial unique index is the per-target merge lock,
    the same on SQLite and PostgreSQL. ``host`` is the author's host ('' on SQLite): its
    repository is the one the merge happens in."""
    id = AutoField()
    created_at = DoubleField()
    updated_at = DoubleField()
    state = CharField(max_length=20, constraints=[SQL(MERGE_STATE_CHECK)])
    author = CharField(max_length=100)
    host = CharField(max_length=255, default="", constraints=[SQL("DEFAULT ''")])
    branch = TextField()
    target = TextField()
    base = CharField(max_length=64)
    head = CharField(max_length=64)
    task_id = BigIntegerField(null=True)
    reviewer = CharField(max_length=100, null=True)  # None: a person reviews
    decided_by = TextField(null=True)                # who approved or asked for changes
    comments = TextField(null=True)                  # the reviewer's
    merged_head = CharField(max_length=64, null=True)  # the target's head after the merge
    reason = TextField(null=True)                    # why it failed, in one line
    output = TextField(null=True)                    # the checks' (or git's) output, its tail
    attempts = IntegerField(default=0)               # merges begun
    not_before = DoubleField(default=0.0)            # an approved item waits until then

    class Meta:
        table_name = "merge_items"
        indexes = ((("state", "id"), False), (("author", "state"), False))


MergeItem.add_index(MergeItem.index(MergeItem.host, MergeItem.target, unique=True,
                                    where=SQL("state = 'checking'"), name="merge_items_checking"))


class AgentInstance(BaseModel):
    """Which process holds each agent (schema 15): its host (on Kubernetes the pod), PID and
    that process's start time (``proc_start``: a PID reused by a later process is not it), its
    heartbeat, whether it is ready to claim, its task, and ``restarts``: instances on this host
    that followed one that did not stop cleanly. The agent writes its own row (instances.py);
    probes, ``wait-ready``, ``status --k8s`` and the control plane read it."""
    agent = CharField(max_length=100, primary_key=True)
    host = CharField(max_length=255)
    pid = IntegerField()
    proc_start = DoubleField(null=True)
    started_at = DoubleField()
    heartbeat = DoubleField(null=True)  # None until the instance's first heartbeat
    ready = BooleanField(default=False)
    state = CharField(max_length=20)
    task_id = BigIntegerField(null=True)
    task_type = CharField(max_length=100, null=True)
    task_started_at = DoubleField(null=True)
    waiting_for = CharField(max_length=20, null=True)
    restarts = IntegerField(default=0)

    class Meta:
        table_name = "agent_instances"


class DatabaseIdentity(BaseModel):
    """The database's id (schema 17): one row, written when the database is made (or by the
    upgrade of an older one) and never changed; identity.py tells databases apart by it."""
    id = CharField(max_length=64, primary_key=True)
    created_at = DoubleField()

    class Meta:
        table_name = "database_identity"


AGENT_MODELS = (AgentSession, AgentFailure, FailureCount, MergeItem, AgentInstance,
                DatabaseIdentity)
