"""Task commands: ``send``, ``task show|cancel|retry ID``, ``pause|resume AGENT`` and
``schedule`` (each agent's schedule entries and their next runs).

They write the database directly (like ``send``), so they work whether or not supervisord runs;
a running agent sees a cancel at its next lease renewal and a pause at its next claim.
Exit codes: 2 for bad input (a malformed or unknown id, an unknown agent), 1 when the task's
state does not allow the action.
"""
from __future__ import annotations

import json
import sys
import time

import click

from .base import Context, UserError, echo_json, main, pass_ctx, refused, require_agents
from .data import _when, open_queue


def _task_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise UserError(f"task id must be a positive integer, got {text!r}", exit_code=2)
    return int(text)


def _task_ids(text: str) -> list[int]:
    """--after 41,42"""
    parts = [p.strip().lstrip("#") for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and len(p) <= 18 and int(p) > 0 for p in parts):
        raise UserError(f"--after: expected task ids like 41,42, got {text!r}", exit_code=2)
    return [int(p) for p in parts]


def _agent_name(ctx: Context, agent: str) -> str:
    return require_agents(ctx.team, agent)[0]


def read_content(content: str) -> object:
    """--content: JSON text, @FILE (a file holding it) or - (standard input); at most the
    queue's limit, checked like every other door."""
    from ..queue.content import MAX_CONTENT_BYTES, load_json_text
    from ..errors import ContentError
    if content == "-":
        text = sys.stdin.read(MAX_CONTENT_BYTES + 1)
    elif content.startswith("@"):
        try:
            with open(content[1:], encoding="utf-8") as f:
                text = f.read(MAX_CONTENT_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--content {content}: {getattr(exc, 'strerror', None) or exc}",
                            exit_code=2) from None
    else:
        text = content
    try:
        return load_json_text(text, "--content")
    except ContentError as exc:
        raise UserError(str(exc), exit_code=2) from None


@main.command()
@click.argument("recipient")
@click.argument("type")
@click.option("--content", default=None, help="Task content as JSON (object, list, string…); "
                                               "@FILE reads it from a file, - from stdin.")
@click.option("--priority", default=5, show_default=True, type=int,
              help="0 (most urgent) to 9.")
@click.option("--from", "sender", default="cli", show_default=True, help="Sender name.")
@click.option("--dedupe-key", default=None, help="Return the existing task if one with this "
                                                  "key is pending or in progress.")
@click.option("--delay", default=None, metavar="DURATION",
              help="Claimable only after this long: 30 (seconds), 30s, 5m, 2h (at most 30 days).")
@click.option("--after", default=None, metavar="IDS",
              help="Waiting until these tasks (41,42) completed; one that fails fails it too.")
@click.option("--on-dependency-failure", "on_failure", default="fail", show_default=True,
              type=click.Choice(["fail", "run"]),
              help="With --after: 'run' counts a failed or cancelled task as done.")
@pass_ctx
def send(ctx: Context, recipient: str, type: str, content: str | None, priority: int,
         sender: str, dedupe_key: str | None, delay: str | None, after: str | None,
         on_failure: str) -> None:
    """Send a task to RECIPIENT (an agent, 'all' for a broadcast, or '-' to route by TYPE)."""
    from ..clock import parse_duration
    from ..taskstate import check_delay
    payload = read_content(content) if content is not None else None
    try:
        seconds = check_delay(parse_duration(delay)) if delay is not None else 0.0
    except ValueError as exc:
        raise UserError(f"--delay: {exc}", exit_code=2) from None
    message = dict(sender=sender, recipient=None if recipient == "-" else recipient, type=type,
                   content=payload, priority=priority, dedupe_key=dedupe_key, delay=seconds,
                   after=_task_ids(after) if after else (), on_dependency_failure=on_failure)
    with open_queue(ctx) as queue:
        ids = queue.send_many([message]) if recipient == "all" else [queue.send(**message)]
    click.echo(" ".join(str(i) for i in ids))


@main.group()
def task() -> None:
    """Show, cancel or retry one task."""


@task.command("show")
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def task_show(ctx: Context, task_id: str, as_json: bool) -> None:
    """Content, result, error(s), attempts, timings and holder of task ID."""
    from ..taskstate import NO_RETRY, attempt_label
    number = _task_id(task_id)
    with open_queue(ctx) as q:
        t = q.get_task(number)
        t.update(q.dependencies(number))
    if as_json:
        echo_json(t)
        return
    policy = next((a.retry for a in ctx.team.agents if a.name == t["recipient"]), None)
    lines = [f"task {t['id']}: {t['status']}  {t['type']}  {t['sender']} → {t['recipient']}"
             f"  priority {t['priority']}"
             + (f"  (sent from task {t['sent_from']})" if t.get("sent_from") else ""),
             f"attempt {attempt_label(t['status'], t['failures'], policy or NO_RETRY)}"
             f"  (deliveries {t['attempts']}, failures {t['failures']})",
             f"created {_when(t['created_at'])}  due {_when(t['run_after'])}"
             f"  claimed {_when(t['claimed_at'])}  finished {_when(t['completed_at'])}"]
    if t["claimed_by"]:
        held = t["status"] == "in_progress"
        lines.append(f"{'held by' if held else 'last held by'} {t['claimed_by']}"
                     + (f" (lease until {_when(t['lease_expires_at'])})" if held else ""))
    for side in ("parents", "children"):
        for other in t[side]:
            lines.append(f"{side[:-1] if side == 'parents' else 'child'} #{other['id']}: "
                         f"{other['status'] or 'removed'}  {other['type'] or ''}"
                         f"  → {other['recipient'] or '?'}".rstrip()
                         + ("  (runs if it fails)" if other["on_dependency_failure"] == "run"
                            and side == "parents" else ""))
    if t["status"] == "waiting":
        lines.append(f"waiting on {t['waiting_on']} task(s)")
    lines.append(f"content: {json.dumps(t['content'])}")
    if t["result"] is not None:
        lines.append(f"result: {json.dumps(t['result'])}")
    for error in t["errors"]:
        lines.append(f"error (attempt {error['attempt']}, {_when(error['at'])}): {error['error']}")
    if t["error"] and not t["errors"]:  # crash failures and version-1 rows have no history
        lines.append(f"error: {t['error']}")
    click.echo("\n".join(lines))


def _control(ctx: Context, task_id: str, action: str, as_json: bool) -> None:
    number = _task_id(task_id)
    with open_queue(ctx) as q:
        was = getattr(q, f"{action}_task")(number)
    status = "cancelled" if action == "cancel" else "pending"
    if as_json:
        echo_json({"id": number, "status": status, "was": was})
    else:
        click.echo(f"task {number}: {was} → {status}")


def _control_command(action: str, doc: str):
    """``task cancel`` and ``task retry``: the same command around a different queue call."""
    @task.command(action, help=doc)
    @click.argument("task_id", metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @pass_ctx
    def command(ctx: Context, task_id: str, as_json: bool) -> None:
        _control(ctx, task_id, action, as_json)
    return command


task_cancel = _control_command(
    "cancel", "Cancel task ID (pending or in progress; a running handler is stopped by its agent).")
task_retry = _control_command(
    "retry", "Put a failed, cancelled or delayed pending task ID back to pending now, "
             "attempts reset.")


@main.command()
@click.argument("agent")
@click.option("--reason", default="", help="Shown by status.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def pause(ctx: Context, agent: str, reason: str, as_json: bool) -> None:
    """AGENT finishes its current task and claims nothing new until resumed (kept across
    restarts)."""
    name = _agent_name(ctx, agent)
    with open_queue(ctx) as q:
        q.pause_agent(name, reason=reason)
    if as_json:
        echo_json({"agent": name, "paused": True, "reason": reason})
    else:
        click.echo(f"{name}: paused (finishes its current task, claims nothing new)")


@main.command()
@click.argument("agent")
@click.option("--raise", "raise_usd", type=float, metavar="USD",
              help="Past a budget stop: add USD to today's (UTC) budget.")
@click.option("--raise-tokens", type=int, metavar="N",
              help="Past a budget stop: add N tokens to today's token budget.")
@click.option("--no-budget-today", is_flag=True,
              help="Past a budget stop: no budget for the rest of today (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def resume(ctx: Context, agent: str, raise_usd: float | None, raise_tokens: int | None,
           no_budget_today: bool, as_json: bool) -> None:
    """AGENT claims tasks again. Past its daily budget (or the team's) say how far for today:
    --raise USD, --raise-tokens N or --no-budget-today, so nothing runs unbounded by accident."""
    from ..ops import records
    name = _agent_name(ctx, agent)
    with refused():
        raising = records.budget_raise(raise_usd, raise_tokens, no_budget_today)
        with open_queue(ctx) as q:
            done = records.resume(ctx.team, q, name, raising, time.time())
    was_paused = done["was_paused"]
    if as_json:
        echo_json(done)
    elif raising is not None:
        usd, tokens, unlimited = raising
        raised = [f"${usd:g}"] * bool(usd) + [f"{tokens:,} tokens"] * bool(tokens)
        how = ("no budget for the rest of today (UTC)" if unlimited
               else f"today's budget raised by {' and '.join(raised)}")
        click.echo(f"{name}: resumed, {how}")
    else:
        click.echo(f"{name}: resumed" if was_paused else f"{name}: was not paused")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def schedule(ctx: Context, as_json: bool) -> None:
    """Each agent's schedule entries (team file ``schedule:``) with their next run; the
    watchdog sends each slot's task once."""
    from datetime import datetime

    from ..rules.cron import next_runs, zone
    team = ctx.team
    runs = next_runs(team.agents, team.settings.timezone, time.time())
    if as_json:
        echo_json(runs)
        return
    if not runs:
        click.echo("no schedules (add schedule: to an agent in the team file)")
        return
    for agent, entries in runs.items():
        for e in entries:
            when = "never" if e["next_run"] is None else datetime.fromtimestamp(
                e["next_run"], zone(e["timezone"])).strftime("%Y-%m-%d %H:%M %Z")
            click.echo(f"{agent:<20} {e['name']:<20} {e['cron']:<16} {e['timezone']:<16} "
                       f"next {when}  (catch_up {e['catch_up']})")
