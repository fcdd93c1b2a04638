"""Peewee models: the single source of truth for the coffee-team schema (with
models_agents.py: what is kept per agent beside the tasks).

Models bind to ``database_proxy`` (playhouse style).  A process that talks to
exactly one database may call ``database_proxy.initialize(db)`` and use the
models directly; code that may hold several databases at once (tests, the
queue) binds them temporarily with ``db.bind_ctx(ALL_MODELS)`` instead.

All timestamps are epoch seconds as 8-byte floats: trivially comparable in
SQL, clock-injectable in tests and XML-RPC friendly.  DoubleField, not
FloatField: on PostgreSQL FloatField is 4-byte REAL, ~2 minutes coarse.
"""
from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DoubleField,
    IntegerField,
    Model,
    TextField,
)

from coffee_team.queue.tables import APPROVAL_STATUS_CHECK, LIVE_STATUSES, STATUS_CHECK

database_proxy = DatabaseProxy()

# SCHEMA_VERSION and the constants the queue's SQL needs live in tables.py (no peewee there).


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Task(BaseModel):
    id = AutoField()
    sender = CharField(max_length=100)
    recipient = CharField(max_length=100)
    type = CharField(max_length=100)
    content = TextField(default="null")  # JSON document
    # 0 (most urgent) .. 9; claims are served ORDER BY priority, id.
    priority = IntegerField(default=5)
    created_at = DoubleField()
    completed_at = DoubleField(null=True)  # set for completed, failed *and* cancelled
    status = CharField(
        max_length=20,
        default="pending",
        constraints=[SQL(STATUS_CHECK)],
    )
    claimed_by = CharField(max_length=100, null=True)
    claimed_at = DoubleField(null=True)
    lease_expires_at = DoubleField(null=True)
    attempts = IntegerField(default=0)  # claims (deliveries), crash redeliveries included
    # Handler failures so far; attempts - failures is what max_attempts (crashes) limits.
    failures = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    # A pending task is not claimed before this (send delay, retry backoff); SQL DEFAULT so an
    # upgraded table fills old rows.
    run_after = DoubleField(default=0.0, constraints=[SQL("DEFAULT 0")])
    escalated_at = DoubleField(null=True)  # last priority raise by escalate_pending()
    errors = TextField(null=True)  # JSON list of {"attempt", "at", "error"}, one per failure
    dedupe_key = CharField(max_length=200, null=True)
    error = TextField(null=True)
    result = TextField(null=True)  # JSON document
    # W3C ``traceparent`` of the sender's span, then "\n" + ``tracestate`` when it has one;
    # NULL when tracing was off (otel.py). The claim hands it to the consumer's span.
    traceparent = TextField(null=True)
    # Dependencies (schema 10): parents not finished yet of a waiting task, and how many tasks
    # were sent after this one (> 0 lets the dependency trigger skip every other task).
    waiting_on = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    dependents = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    sent_from = BigIntegerField(null=True)  # the task whose run sent it (through the MCP server)

    class Meta:
        table_name = "tasks"
        # Indexes cost every write, so only what a hot query uses (no
        # created_at index: nothing filters or sorts on it).
        indexes = (
            # Covers the claim sub-select: equality on recipient/status, then
            # already in ORDER BY priority, id order -> no sort, no table hit;
            # run_after rides along so skipping not-yet-due rows needs no table hit either.
            # Its (recipient, status) prefix serves every per-recipient status
            # query, so a separate (recipient, status) index would only add
            # write cost to every state change.
            (("recipient", "status", "priority", "id", "run_after"), False),
        )


# At most one live task per (recipient, dedupe_key): a safety net under the
# check-then-insert in send(), which alone is racy on PostgreSQL.
Task.add_index(
    Task.index(
        Task.recipient,
        Task.dedupe_key,
        unique=True,
        where=SQL(f"dedupe_key IS NOT NULL AND status IN {LIVE_STATUSES}"),
        name="tasks_live_dedupe_key",
    )
)


class QueueDepth(BaseModel):
    """Per recipient, an upper bound on its pending tasks: backpressure is one
    O(1) upsert instead of counting rows.

    MessageQueue raises it, in the same transaction, on every change that
    puts tasks into 'pending' (send, lease release, requeue).  Claims leave it
    alone so they write nothing extra; when a send would push it past
    max_queue_size the rows are counted (capped) and the bound reset to the
    truth.  Exact across processes; on PostgreSQL the row lock makes
    concurrent senders to one recipient check the limit one at a time.
    Anything else that moves a task back to 'pending' must raise it too.
    """
    recipient = CharField(max_length=100, primary_key=True)
    pending_bound = IntegerField(default=0)

    class Meta:
        table_name = "queue_depth"


class TaskCount(BaseModel):
    """Per recipient, how many tasks are completed, failed and cancelled: the counts that grow
    without bound, so stats never count them row by row (pending and in-progress rows are few
    and counted through the claim index).

    Kept exact by database triggers (sql.TASK_COUNT_TRIGGERS) on every status change into or
    out of a finished state and on every delete, whoever writes: one upsert per finished task.
    """
    recipient = CharField(max_length=100)
    status = CharField(max_length=20)
    n = IntegerField(default=0)

    class Meta:
        table_name = "task_counts"
        primary_key = CompositeKey("recipient", "status")


class Metric(BaseModel):
    id = AutoField()
    agent = CharField(max_length=100)
    task_type = CharField(max_length=100)
    duration_ms = DoubleField()
    timestamp = DoubleField()

    class Meta:
        table_name = "metrics"
        # No secondary index on SQLite: a row per finished task is written on the hot path,
        # and every index is one more page per commit in the WAL.  The analytics queries
        # (``coffee-team metrics``, on demand) scan the table; the /metrics histogram reads
        # by id, the rowid.  PostgreSQL, where the extra index costs no round trip, keeps
        # one on timestamp (migrate.py, schema 8).


class Event(BaseModel):
    id = AutoField()
    ts = DoubleField()
    agent = CharField(max_length=100, null=True)
    kind = TextField()
    detail = TextField(default="{}")  # JSON document

    class Meta:
        table_name = "events"
        indexes = ((("agent", "id"), False),)


class Notification(BaseModel):
    id = AutoField()
    created_at = DoubleField()
    level = CharField(
        max_length=10,
        constraints=[SQL("CHECK (level IN ('INFO', 'WARNING', 'CRITICAL'))")],
    )
    agent = CharField(max_length=100, null=True)
    title = TextField()
    message = TextField()
    # Background agents are silent (CFR-009): stored for the UI, never set.
    sound = BooleanField(default=False)
    acknowledged = BooleanField(default=False)

    class Meta:
        table_name = "notifications"


class RestartState(BaseModel):
    """The watchdog's restart bookkeeping of one agent *on one host*: hosts sharing a
    PostgreSQL database run their own instances (one active, the others standby), so a
    crash or give-up on host B must not show on host A's agent. SQLite serves one host:
    ``host`` is '' there."""
    agent = CharField(max_length=100)
    host = CharField(max_length=255, default="", constraints=[SQL("DEFAULT ''")])
    attempts = IntegerField(default=0)
    next_restart_at = DoubleField(null=True)
    given_up = BooleanField(default=False)
    running_since = DoubleField(null=True)
    last_crash_at = DoubleField(null=True)
    hang_restart = BooleanField(default=False)

    class Meta:
        table_name = "restart_state"
        primary_key = CompositeKey("agent", "host")


class AgentPause(BaseModel):
    """An agent that claims nothing new (``coffee-team pause``); no row means running.

    ``paused_until`` NULL is until resumed; a time lets a later budget feature pause until
    then without a schema change (the claim already treats a past time as resumed).
    """
    agent = CharField(max_length=100, primary_key=True)
    paused_at = DoubleField()
    paused_until = DoubleField(null=True)
    reason = TextField(default="")

    class Meta:
        table_name = "agent_pause"


class NotifyTargetRow(BaseModel):
    """A ``team.notify`` destination the deliverer has seen (``target`` is NotifyTarget.key).

    Only notifications created from ``added_at`` on go to it (a new target gets no history);
    ``since_id`` is how far planning got, so each pass reads only the newest notifications.
    """
    target = CharField(max_length=64, primary_key=True)
    label = TextField()
    added_at = DoubleField()
    since_id = IntegerField(default=0)

    class Meta:
        table_name = "notify_targets"


class Delivery(BaseModel):
    """One notification to one target: tried until ``delivered_at`` is set, never after."""
    id = AutoField()
    notification_id = IntegerField()
    target = CharField(max_length=64)
    attempts = IntegerField(default=0)
    next_try_at = DoubleField()  # pushed ahead before each attempt: a claim, and the retry time
    delivered_at = DoubleField(null=True)
    last_error = TextField(null=True)

    class Meta:
        table_name = "deliveries"
        indexes = ((("notification_id", "target"), True), (("next_try_at",), False))


class LlmUsage(BaseModel):
    """What one run of an LLM agent's CLI cost, as the CLI reported it: one row per run
    (a task's every attempt, a periodic run), written as soon as the CLI exits, so failed and
    rate-limited runs count against the budget too. ``day`` is the UTC day (YYYY-MM-DD),
    fixed at insert so budgets and ``costs --by day`` group without dialect date functions."""
    id = AutoField()
    task_id = BigIntegerField(null=True)  # None: a periodic run
    agent = CharField(max_length=100)
    task_type = CharField(max_length=100)
    ts = DoubleField()
    day = CharField(max_length=10)
    cost_usd = DoubleField(default=0.0)
    tokens_in = BigIntegerField(default=0)
    tokens_out = BigIntegerField(default=0)
    cache_read = BigIntegerField(default=0)
    cache_write = BigIntegerField(default=0)
    # ok, error, rate_limited, over_budget, timeout, stalled, cancelled, stopped; "running"
    # while the run goes on (kept current as its events come), "killed" when its agent died
    outcome = CharField(max_length=20, default="ok")
    # the figures are not the CLI's own totals: counted from the events of a run cut off, or
    # the cost estimated from the team file's prices
    estimated = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])

    class Meta:
        table_name = "llm_usage"
        # the budget check before each claim reads one agent's (or every agent's) day
        indexes = ((("agent", "day"), False), (("day",), False), (("ts",), False))


class BudgetStop(BaseModel):
    """A budget reached: at most one row per (scope, UTC day), inserted with the pause and
    the notification in one transaction, so both happen once even when agents race. A row
    without a pause in force means a person resumed the scope: intake goes on that day."""
    scope = CharField(max_length=100)  # an agent, or "team:"
    day = CharField(max_length=10)
    stopped_at = DoubleField()
    reason = TextField(default="")

    class Meta:
        table_name = "budget_stop"
        primary_key = CompositeKey("scope", "day")


class BudgetAllowance(BaseModel):
    """What a person allowed on top of a budget for one UTC day (``resume --raise``), or no
    budget at all that day (``--no-budget-today``)."""
    scope = CharField(max_length=100)  # an agent, or "team:"
    day = CharField(max_length=10)
    usd = DoubleField(default=0.0)
    tokens = BigIntegerField(default=0)
    unlimited = BooleanField(default=False)
    updated_at = DoubleField()

    class Meta:
        table_name = "budget_allowance"
        primary_key = CompositeKey("scope", "day")


class TaskDep(BaseModel):
    """``child`` was sent after ``parent`` (``send(after=...)``). ``resolved`` once the parent
    finished (the trigger of sql_schema.DEPENDENCY_TRIGGERS counts it once, however often the
    parent is retried); ``run_on_failure`` 1: a failed parent counts as done for this child;
    ``channel``: the child's NOTIFY channel on PostgreSQL, for the trigger's wake-up; ``kind``
    below."""
    parent = BigIntegerField()
    child = BigIntegerField()
    resolved = IntegerField(default=0)
    run_on_failure = IntegerField(default=0)
    channel = TextField(null=True)
    # "after": the child was sent after the parent; "reply": the child's running handler
    # waits on the parent (ctx.wait_for): only the wait-for graph tells them apart.
    kind = CharField(max_length=10, default="after")

    class Meta:
        table_name = "task_deps"
        primary_key = CompositeKey("parent", "child")
        indexes = ((("child",), False),)


class ScheduleRun(BaseModel):
    """One slot of one agent's schedule entry, sent (``task_id``) or only recorded (NULL: seen
    late with catch_up none, or the entry's first look): the key makes it once per slot,
    whichever watchdog (host) gets there first."""
    agent = CharField(max_length=100)
    entry = CharField(max_length=100)
    slot = DoubleField()
    recorded_at = DoubleField()
    task_id = BigIntegerField(null=True)

    class Meta:
        table_name = "schedule_runs"
        primary_key = CompositeKey("agent", "entry", "slot")


class WaitCycle(BaseModel):
    """A wait cycle among agents that was reported (``cycle`` names its tasks): once per cycle,
    whichever watchdog found it."""
    cycle = CharField(max_length=255, primary_key=True)
    reported_at = DoubleField()

    class Meta:
        table_name = "wait_cycles"


class Approval(BaseModel):
    """A person's approval asked for (kind: ``tool`` call, ``task``, ...) and its decision:
    who, when, why (a timeout's: decided_by 'timeout'). Never deleted; see approvals.py."""
    id = AutoField()
    kind = CharField(max_length=20)
    agent = CharField(max_length=100)           # whose work asks
    task_id = BigIntegerField(null=True)        # the task it is about (the running one)
    subject = TextField()                       # one line for a person
    request = TextField(default="{}")           # JSON: what exactly is asked
    status = CharField(max_length=20, default="pending", constraints=[SQL(APPROVAL_STATUS_CHECK)])
    created_at = DoubleField()
    expires_at = DoubleField(null=True)         # NULL: waits until someone decides
    on_timeout = CharField(max_length=10, default="deny")
    notification_id = BigIntegerField(null=True)  # acknowledged with the decision
    decided_at = DoubleField(null=True)
    decided_by = CharField(max_length=100, null=True)
    reason = TextField(null=True)

    class Meta:
        table_name = "approvals"
        indexes = ((("status", "id"), False), (("task_id",), False), (("agent", "status"), False))


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = DoubleField()

    class Meta:
        table_name = "schema_version"


# models_agents.AGENT_MODELS are the rest: migrate.py creates both.
ALL_MODELS = (Task, QueueDepth, TaskCount, Metric, Event, Notification, RestartState, AgentPause,
              NotifyTargetRow, Delivery, LlmUsage, BudgetStop, BudgetAllowance, TaskDep,
              ScheduleRun, WaitCycle, Approval, SchemaVersion)
