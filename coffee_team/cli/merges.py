"""``coffee-team merges``: the review and merge queue — what waits for review, what is queued
or being checked, what merged and what failed (and why), read from the database, so it works
whether or not supervisord runs. ``merges show ID`` adds the item's checks' output.
"""
from __future__ import annotations

import time

import click

from ..status import human_duration
from ..taskstate import MERGE_STATES
from .base import Context, UserError, echo_json, main, pass_ctx
from .data import _when, open_queue

SECTIONS = (("waiting_review", "waiting for review"), ("approved", "approved, queued"),
            ("checking", "checking"), ("merged", "merged"), ("failed", "failed"))


def line(item: dict, now: float) -> str:
    """One item: who, what range into which branch, how long ago, and what it came to."""
    if item["state"] == "waiting_review":
        what = f"reviewer {item['reviewer'] or 'a person'}"
    elif item["state"] == "merged":
        what = f"{item['target']} at {(item['merged_head'] or '')[:10]}" \
            + (f" ({item['reason']})" if item["reason"] else "")
    else:
        what = item["reason"] or ""
    ago = human_duration(max(0.0, now - item["updated_at"]))
    return (f"  #{item['id']:<5} {item['author']:<18} {item['branch']} → {item['target']}  "
            f"{item['base'][:10]}..{item['head'][:10]}  {ago} ago  {what}").rstrip()


def render(items: list[dict], now: float) -> str:
    if not items:
        return ("no merges yet: an agent with workspace.merge asks for one when a task leaves "
                "commits on its branch")
    lines = []
    for state, title in SECTIONS:
        mine = [item for item in items if item["state"] == state]
        if mine:
            lines.append(f"{title} ({len(mine)}):")
            lines += [line(item, now) for item in mine]
    return "\n".join(lines)


def details(item: dict) -> str:
    fields = [("state", item["state"]), ("author", item["author"]),
              ("branch", f"{item['branch']} → {item['target']}"),
              ("range", f"{item['base']}..{item['head']}"),
              ("task", f"#{item['task_id']}" if item["task_id"] is not None else "-"),
              ("reviewer", item["reviewer"] or "a person"),
              ("decided by", item["decided_by"] or "-"), ("comments", item["comments"] or "-"),
              ("merged as", item["merged_head"] or "-"), ("reason", item["reason"] or "-"),
              ("attempts", item["attempts"]), ("asked", _when(item["created_at"])),
              ("changed", _when(item["updated_at"]))]
    text = "\n".join(f"{name + ':':<12} {value}" for name, value in fields)
    if item["output"]:
        text += "\noutput:\n" + item["output"].rstrip()
    return f"merge #{item['id']}\n{text}"


@main.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(MERGE_STATES), help="Only items in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, newest first.")
@click.pass_context
def merges(click_ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """The review and merge queue: waiting for review, approved, checking, merged, failed."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    with open_queue(ctx) as q:
        items = q.merge_items(state=state, limit=limit)
    if as_json:
        echo_json(items)
    else:
        click.echo(render(items, time.time()))


@merges.command("show")
@click.argument("item_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def show(ctx: Context, item_id: int, as_json: bool) -> None:
    """One item, with its checks' (or git's) output."""
    with open_queue(ctx) as q:
        item = q.merge_item(item_id)
    if item is None:
        raise UserError(f"no merge item #{item_id} (coffee-team merges lists them)",
                        exit_code=2)
    if as_json:
        echo_json(item)
    else:
        click.echo(details(item))
