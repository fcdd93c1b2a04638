"""Peewee models of what the queue keeps per agent beside its tasks: the CLI session an llm
agent resumes, and its tasks that failed for good (for ``status``). Apart from models.py (at
its size limit); migrate.py creates them with the rest (``AGENT_MODELS``)."""
from __future__ import annotations

from peewee import BigIntegerField, CharField, CompositeKey, DoubleField, IntegerField, TextField

from coffee_team.queue.models import BaseModel


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


AGENT_MODELS = (AgentSession, AgentFailure, FailureCount)
