"""``coffee-team costs``: what the llm agents spent, by agent, task type or UTC day.

Read from the database (every run of an agent's CLI stores its cost and tokens), so it works
whether or not supervisord runs.
"""
from __future__ import annotations

import time

import click

from .base import Context, echo_json, main, pass_ctx, refused
from .data import _when, open_queue

def parse_since(text: str) -> float:
    """``7d``, ``24h``, ``30m``, ``90s`` → seconds (ops.records.since_seconds)."""
    from ..ops.records import since_seconds
    with refused():
        return since_seconds(text)


def render(data: dict, since_text: str) -> str:
    lines = [f"Costs since {_when(data['since'])} ({since_text}), by {data['by']}:"]
    for row in [*data["groups"], data["total"]]:
        lines.append(f"  {row['key']:<24} ${row['cost_usd']:>10.4f}  {row['runs']:>5} runs  "
                     f"tokens in {row['tokens_in']:,} out {row['tokens_out']:,} "
                     f"(cache read {row['cache_read']:,}, write {row['cache_write']:,})"
                     + (f", {row['estimated_runs']} estimated" if row.get("estimated_runs")
                        else ""))
    return "\n".join(lines)


@main.command()
@click.option("--by", type=click.Choice(["agent", "type", "day"]), default="agent",
              show_default=True, help="Group by agent, task type or UTC day.")
@click.option("--since", "since_text", default="7d", show_default=True,
              help="How far back: 7d, 24h, 30m (a bare number is seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def costs(ctx: Context, by: str, since_text: str, as_json: bool) -> None:
    """Cost and tokens of the llm agents' runs, as their CLIs reported them ("estimated":
    counted from the events of a run cut off, or priced from the team file's prices)."""
    since = time.time() - parse_since(since_text)
    with open_queue(ctx) as q:
        data = q.costs(since, by)
    if as_json:
        echo_json(data)
    else:
        click.echo(render(data, since_text))
