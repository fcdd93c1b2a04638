"""``coffee-team approvals``, ``approve ID`` and ``deny ID``: a person's decisions.

They write the database directly (like ``task cancel``): a waiting call's MCP server reads
the decision within a second, a held task is pending (or cancelled) at once. The first
decision stands; an unknown id is exit 2, one decided before exit 1 naming who decided.
"""
from __future__ import annotations

import getpass
import json
import time

import click

from ..status import human_duration
from .base import Context, echo_json, main, pass_ctx
from .data import _when, open_queue

STATUSES = ("pending", "approved", "denied", "cancelled")


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name for this uid (a container): still someone decided
        return "a person"


def describe(row: dict, now: float) -> str:
    """One line per request: what it asks and what became of it."""
    task = row["task_id"]
    where = f" (task #{task})" if task is not None and f"#{task} " not in row["subject"] else ""
    head = (f"{row['id']:>5} {row['status']:<9} {row['agent']} {row['kind']}: "
            f"{row['subject']}{where}")
    if row["status"] == "pending":
        asked = f"asked {human_duration(max(0.0, now - row['created_at']))} ago"
        if row["expires_at"] is not None:
            outcome = "approved" if row["on_timeout"] == "allow" else "denied"
            asked += (f", {outcome} in {human_duration(max(0.0, row['expires_at'] - now))}"
                      f" without an answer")
        return f"{head}  [{asked}]"
    why = f": {row['reason']}" if row["reason"] else ""
    return f"{head}  [{row['status']} by {row['decided_by']} {_when(row['decided_at'])}{why}]"


@main.command("approvals")
@click.option("--status", type=click.Choice(STATUSES), default="pending", show_default=True,
              help="Which requests to list.")
@click.option("--all", "show_all", is_flag=True, help="Every request, whatever its status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def approvals(ctx: Context, status: str, show_all: bool, limit: int, as_json: bool) -> None:
    """Requests waiting for a person (an llm agent's tool calls, tasks of an approve_before
    type), newest first; --all with the decisions (who, when, why)."""
    with open_queue(ctx) as q:
        rows = q.list_approvals(None if show_all else status, limit)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no approvals" if show_all else f"no {status} approvals")
        return
    now = time.time()
    for row in rows:
        click.echo(describe(row, now))
        if row["kind"] == "tool" and row["status"] == "pending":
            detail = json.dumps(row["request"].get("input"), ensure_ascii=False)
            click.echo(f"        input: {detail[:300]}")


def _decide(ctx: Context, approval_id: int, approve: bool, reason: str, by: str | None,
            as_json: bool) -> None:
    with open_queue(ctx) as q:  # an unknown id: exit 2; decided before: exit 1, by whom
        row = q.decide_approval(approval_id, approve, by or _who(), reason)
    if as_json:
        echo_json(row)
        return
    click.echo(f"approval {approval_id} {row['status']} by {row['decided_by']}: "
               f"{row['agent']} {row['subject']}")


def _decision_command(name: str, approve: bool, doc: str):
    @main.command(name, help=doc)
    @click.argument("approval_id", metavar="ID", type=click.IntRange(1, 2**62))
    @click.option("--reason", default="", help="Why (kept with the decision; a denied agent "
                                               "reads it).")
    @click.option("--by", default=None, help="Who decides (default: your user name).")
    @click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON.")
    @pass_ctx
    def command(ctx: Context, approval_id: int, reason: str, by: str | None,
                as_json: bool) -> None:
        _decide(ctx, approval_id, approve, reason, by, as_json)
    return command


approve = _decision_command(
    "approve", True, "Approve request ID: the waiting tool call runs, the held task goes to "
                     "pending, or the reviewed commits join the merge queue.")
deny = _decision_command(
    "deny", False, "Deny request ID: the waiting tool call is refused with --reason, the held "
                   "task is cancelled, or the reviewed commits go back to their author with "
                   "--reason.")
