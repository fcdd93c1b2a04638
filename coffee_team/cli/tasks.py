"""Task control commands: ``task show|cancel|retry ID`` and ``pause|resume AGENT``.

They write the database directly (like ``send``), so they work whether or not supervisord runs;
a running agent sees a cancel at its next lease renewal and a pause at its next claim.
Exit codes: 2 for bad input (a malformed or unknown id, an unknown agent), 1 when the task's
state does not allow the action.
"""
from __future__ import annotations

import json

import click

from .base import Context, UserError, echo_json, main, pass_ctx, require_agents
from .data import _when, open_queue


def _task_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise UserError(f"task id must be a positive integer, got {text!r}", exit_code=2)
    return int(text)


def _agent_name(ctx: Context, agent: str) -> str:
    return require_agents(ctx.team, agent)[0]


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
    if as_json:
        echo_json(t)
        return
    policy = next((a.retry for a in ctx.team.agents if a.name == t["recipient"]), None)
    lines = [f"task {t['id']}: {t['status']}  {t['type']}  {t['sender']} → {t['recipient']}"
             f"  priority {t['priority']}",
             f"attempt {attempt_label(t['status'], t['failures'], policy or NO_RETRY)}"
             f"  (deliveries {t['attempts']}, failures {t['failures']})",
             f"created {_when(t['created_at'])}  due {_when(t['run_after'])}"
             f"  claimed {_when(t['claimed_at'])}  finished {_when(t['completed_at'])}"]
    if t["claimed_by"]:
        held = t["status"] == "in_progress"
        lines.append(f"{'held by' if held else 'last held by'} {t['claimed_by']}"
                     + (f" (lease until {_when(t['lease_expires_at'])})" if held else ""))
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
    "retry", "Put a failed or cancelled task ID back to pending, attempts reset.")


@main.command()
@click.argument("agent")
@click.option("--reason", default="", help="Shown by status.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def pause(ctx: Context, agent: str, reason: str, as_json: bool) -> None:
    """AGENT finishes its current task and claims nothing new until resumed (kept across
    restarts)."""
    name = _agent_name(ctx, agent)
    with open_queue(ctx, create=True) as q:
        q.pause_agent(name, reason=reason)
    if as_json:
        echo_json({"agent": name, "paused": True, "reason": reason})
    else:
        click.echo(f"{name}: paused (finishes its current task, claims nothing new)")


@main.command()
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def resume(ctx: Context, agent: str, as_json: bool) -> None:
    """AGENT claims tasks again."""
    name = _agent_name(ctx, agent)
    with open_queue(ctx, create=True) as q:
        was_paused = q.resume_agent(name)
    if as_json:
        echo_json({"agent": name, "paused": False, "was_paused": was_paused})
    else:
        click.echo(f"{name}: resumed" if was_paused else f"{name}: was not paused")
