"""``coffee-team`` commands over the team's database: queue, metrics, cleanup, notifications,
history, trace (send is with the task commands). They work whether or not supervisord runs."""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager

import click

from ..errors import describe_error
from ..status import human_duration
from .base import Context, UserError, config_team, echo_json, main, parse_agents, pass_ctx
from .dbfile import never_made, stale_in_running_team



@contextmanager
def open_queue(ctx: Context, create: bool = False, none_if_new: bool = False):
    """The team's queue. Only ``start`` (and ``init``) may make a database (``create``, and
    only where none ever was: queue/files.py); every other command refuses a missing one.
    ``none_if_new``: None instead, where no database ever was (nothing in it to change)."""
    if none_if_new and not create and never_made(ctx.team):
        yield None
        return
    from ..errors import (ApprovalNotFound, ContentError, DatabaseMissing,
                          DatabaseUnavailable, TaskNotFound)
    from ..queue import MessageQueue, QueueError
    from ..extras import MissingExtra
    try:
        queue = MessageQueue.from_team(ctx.team, create=create)
    except MissingExtra as exc:
        raise UserError(str(exc)) from None
    except DatabaseUnavailable as exc:  # missing, or another database's WAL beside it
        held = stale_in_running_team(ctx.team)  # e.g. where the running team has it now
        raise UserError(f"{ctx.team.database_url}: database missing: {held}" if held and
                        isinstance(exc, DatabaseMissing) else str(exc)) from None
    except QueueError as exc:
        raise UserError(f"{ctx.team.database_url}: {exc}") from None
    except Exception as exc:  # sqlite3/peewee errors: a corrupt or unreadable database
        raise UserError(cannot_open(ctx.team, exc)) from None
    try:
        yield queue
    except QueueError as exc:  # an unknown task id or bad content is bad input (2); the rest
        bad_input = isinstance(exc, (TaskNotFound, ApprovalNotFound, ContentError))  # state: 1
        raise UserError(str(exc), exit_code=2 if bad_input else 1) from None
    finally:
        queue.close()


def cannot_open(team, exc: Exception) -> str:
    """Why the database did not open, in one line; a full disk named with its free space."""
    from .. import diskspace
    full = diskspace.full_line(team.database_url) if not team.is_postgres else None
    if full:
        return f"{team.database_url}: cannot open the database ({describe_error(exc)}): {full}"
    return f"{team.database_url}: cannot open the database ({describe_error(exc)})"


def _finite(param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets nan and inf through (every comparison with nan is false)."""
    import math
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of hours", param=param)
    return value


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


# --- messages --------------------------------------------------------------------------------

@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def queue(click_ctx: click.Context, as_json: bool) -> None:
    """Task counts per recipient and status, and the oldest pending age."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    with open_queue(ctx) as q:
        stats = q.stats()
    if as_json:
        echo_json(stats)
        return
    if not stats:
        click.echo("queue is empty")
        return
    click.echo(f"{'recipient':<20} {'waiting':>8} {'pending':>8} {'working':>8} {'done':>8} "
               f"{'failed':>8} {'cancelled':>9}  oldest pending")
    for name, row in sorted(stats.items()):
        age = row.get("oldest_pending_age_s")
        click.echo(f"{name:<20} {row['waiting']:>8} {row['pending']:>8} {row['in_progress']:>8} "
                   f"{row['completed']:>8} {row['failed']:>8} {row['cancelled']:>9}  "
                   f"{human_duration(age) if age is not None else '-'}")


@queue.command("list")
@click.option("--status", type=click.Choice(["waiting", "pending", "in_progress", "completed",
                                             "failed", "cancelled"]))
@click.option("--agent", help="Only tasks for this recipient.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def queue_list(ctx: Context, status: str | None, agent: str | None, limit: int,
               as_json: bool) -> None:
    """List tasks, newest first."""
    parse_agents(ctx.team, agent)
    with open_queue(ctx) as q:
        tasks = q.list_tasks(status=status, agent=agent, limit=limit)
        waits = q.waits_of([t["id"] for t in tasks if t["status"] == "waiting"])
    for t in tasks:
        if t["status"] == "waiting":
            t["waits_on"] = waits.get(t["id"], [])
    if as_json:
        echo_json(tasks)
        return
    from ..taskstate import NO_RETRY, attempt_label
    policies = {a.name: a.retry or NO_RETRY for a in ctx.team.agents}
    now = time.time()
    for t in tasks:
        took = (f"{(t['completed_at'] - t['claimed_at']) * 1000:.0f}ms"
                if t.get("completed_at") and t.get("claimed_at") else "")
        attempt = attempt_label(t["status"], t["failures"], policies.get(t["recipient"], NO_RETRY))
        later = (f" next try {_when(t['run_after'])}"
                 if t["status"] == "pending" and t["run_after"] > now else "")
        if t["status"] == "waiting":
            later = " after " + ",".join(f"#{i}" for i in t["waits_on"])
        click.echo(f"{t['id']:>6} {t['status']:<11} p{t['priority']} {t['sender']}→"
                   f"{t['recipient']} {t['type']} attempt {attempt}{later} {took} "
                   f"{t.get('error') or ''}".rstrip())


@main.command()
@click.option("--days", default=7.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--prometheus", is_flag=True,
              help="Print the /metrics exposition instead (for node_exporter's textfile "
                   "collector); agent series need supervisord, queue series do not.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="With --prometheus: write this file atomically (a *.prom file in the "
                   "collector's directory) instead of printing.")
@pass_ctx
def metrics(ctx: Context, days: float, as_json: bool, prometheus: bool, out: str | None) -> None:
    """Bottlenecks (slowest task types) and agent performance."""
    if prometheus:
        return _prometheus(ctx, out)
    with open_queue(ctx) as q:
        data = {"days": days, "bottlenecks": q.bottlenecks(days),
                "agent_performance": q.agent_performance(days), "states": q.state_counts(days)}
    if as_json:
        echo_json(data)
        return
    click.echo(f"Tasks (last {days:g} days): " + ", ".join(
        f"{count} {state}" for state, count in data["states"].items()))
    click.echo(f"Bottlenecks (last {days:g} days, slowest first):")
    for row in data["bottlenecks"]:
        click.echo(f"  {row['task_type']:<24} avg {row['avg_ms']:>9.1f} ms  ({row['count']} tasks)")
    click.echo("Agent performance:")
    for row in data["agent_performance"]:
        click.echo(f"  {row['agent']:<24} {row['count']:>6} tasks  avg {row['avg_ms']:>9.1f} ms")


def _prometheus(ctx: Context, out: str | None) -> None:
    from .. import client, promexport
    from ..errors import SupervisorDown
    try:
        status = client.call(ctx.endpoint, "coffee.getTeamStatus", timeout=10)
    except SupervisorDown:
        status = None  # coffee_supervisord_up 0: the queue's series still count
    with open_queue(ctx) as q:
        text = promexport.render(status, q, ctx.team.names).decode()
    if out is None:
        click.echo(text, nl=False)
    else:
        _write_textfile(out, text)


def _write_textfile(path: str, text: str) -> None:
    """Atomically (node_exporter may read at any moment) and world-readable (it runs as its
    own user); the temporary name does not end in .prom, so the collector skips it."""
    import os
    import tempfile
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".coffee-metrics-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@main.command()
@click.option("--older-than-hours", type=click.FloatRange(min=0), default=None,
              callback=lambda ctx, param, value: _finite(param, value),
              help="Default: the team's cleanup_interval_hours.")
@pass_ctx
def cleanup(ctx: Context, older_than_hours: float | None) -> None:
    """Remove completed and failed tasks older than cleanup_interval_hours."""
    hours = ctx.team.settings.cleanup_interval_hours if older_than_hours is None \
        else older_than_hours
    with open_queue(ctx) as q:
        removed = q.cleanup(hours * 3600)
    click.echo(f"removed {removed} finished task(s) older than {hours:g}h")


# --- watchdog records ------------------------------------------------------------------------

@main.group(invoke_without_command=True)
@click.option("--ack", "ack_id", type=click.IntRange(1, 2**63 - 1), default=None,
              help="Acknowledge notification ID.")
@click.option("--ack-all", is_flag=True, help="Acknowledge every notification.")
@click.option("--all", "show_all", is_flag=True, help="Include acknowledged ones.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def notifications(click_ctx: click.Context, ack_id: int | None, ack_all: bool, show_all: bool,
                  as_json: bool) -> None:
    """The watchdog's notifications (always silent: sound is False, seed CFR-009), and their
    delivery to each team.notify target."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    with open_queue(ctx) as q:
        if ack_id is not None:
            if not q.ack_notification(ack_id):
                raise UserError(f"no unacknowledged notification {ack_id}")
            click.echo(f"acknowledged {ack_id}")
            return
        if ack_all:
            pending = q.notifications(unacked_only=True)
            for n in pending:
                q.ack_notification(n["id"])
            click.echo(f"acknowledged {len(pending)}")
            return
        rows = q.notifications(unacked_only=not show_all)
        deliveries = q.deliveries_since(rows[0]["id"] - 1) if rows else []
        summary = q.delivery_summary()
    if as_json:
        for n in rows:
            n["deliveries"] = [d for d in deliveries if d["notification_id"] == n["id"]]
        echo_json(rows)
        return
    if not rows:
        click.echo("no notifications")
    for n in rows:
        click.echo(f"{n['id']:>5} {_when(n['created_at'])} {n['level']:<8} {n['title']}")
    labels = {t.key: t.label for t in ctx.team.settings.notify}
    for row in summary:
        if row["target"] not in labels:
            continue  # a target the team file no longer has
        line = (f"delivery to {row['label']}: {row['delivered']} delivered, {row['pending']} "
                f"pending, {row['failing']} failed")
        if row["failing"]:
            line += f" (retrying at {_when(row['next_try_at'])}: {row['last_error']})"
        click.echo(line)


@notifications.command("test")
@pass_ctx
def notifications_test(ctx: Context) -> None:
    """Send one test notification to every team.notify target now; exit 1 if any failed."""
    from ..notify import send_test
    team = config_team(ctx)
    if not team.settings.notify:
        raise UserError(f"{team.path}: team.notify lists no targets", exit_code=2)
    results = send_test(team)
    for target, result in results:
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {target.label}"
                   + ("" if result.ok else f": {result.error}"))
    if not all(result.ok for _, result in results):
        raise SystemExit(1)


def _exit_detail(e: dict) -> str:
    d = e["detail"]
    return ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("due_at",))


@main.command()
@click.argument("agent", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def history(ctx: Context, agent: str | None, limit: int, as_json: bool) -> None:
    """Lifecycle history: why an agent crashed, its restarts, who exceeded max restarts."""
    from ..ops.records import history as read_history
    parse_agents(ctx.team, agent)
    with open_queue(ctx) as q:
        data = read_history(q, agent, limit)
    summary, recent = data["summary"], data["events"]
    if as_json:
        echo_json(data)
        return
    for e in recent:
        click.echo(f"{_when(e['ts'])} {e['agent'] or '-':<18} {e['kind']:<18} {_exit_detail(e)}")
    if summary:
        click.echo("")
    for name, row in sorted(summary.items()):
        line = f"{name}: {row['crashes']} crash(es), {row['restarts']} restart(s)"
        if row["manual_restarts"]:
            line += f" + {row['manual_restarts']} by hand"
        if row["last_crash"]:
            line += f", last crash: {row['last_crash']}"
        if row["given_up"]:
            line += ", GIVEN UP (exceeded max restarts)"
        click.echo(line)


@main.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True))
@click.option("--format", "fmt", type=click.Choice(["chrome", "events"]), default="chrome",
              show_default=True, help="chrome: trace-event JSON for Perfetto / "
                                      "chrome://tracing; events: the seed's trace events.")
@click.option("--limit", default=100000, show_default=True, type=click.IntRange(1, 10**7),
              help="Most recent tasks to include.")
@pass_ctx
def trace(ctx: Context, out_path: str, fmt: str, limit: int) -> None:
    """Write the team's timeline: agent lifetimes, restarts, tasks and their durations."""
    from .. import tracing
    with open_queue(ctx) as q:
        events = q.events(limit=10**7)
        tasks = q.list_tasks(limit=limit)
    data = tracing.chrome_trace(events, tasks) if fmt == "chrome" \
        else tracing.seed_trace(events, tasks)
    try:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(data, f)
    except OSError as exc:  # e.g. a directory that does not exist: the path is bad input
        raise UserError(f"--out {out_path}: {exc.strerror or exc}", exit_code=2) from None
    count = len(data["traceEvents"]) if fmt == "chrome" else len(data["events"])
    click.echo(f"wrote {count} trace events to {out_path}")
