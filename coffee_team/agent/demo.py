"""Built-in demo handlers: the seed's communication pattern with a short, configurable work time.

architect → spec_created → code_developer → needs_verification → project_manager;
assistant → bug_report → project_manager; project_manager → ``all`` broadcasts.
Each agent's ``options.work_seconds`` (default 0.2) is how long one piece of work takes.
"""
from __future__ import annotations

import itertools
import time
from typing import Any

from ..handlers import HandlerContext

_counter = itertools.count(1)


def _work(ctx: HandlerContext) -> None:
    time.sleep(float(ctx.options.get("work_seconds", 0.2)))


def architect(task: dict, ctx: HandlerContext) -> Any:
    if task["type"] in ("periodic", "design_request"):
        _work(ctx)
        spec_id = f"SPEC-{next(_counter):03d}"
        ctx.send("code_developer", "spec_created", {"spec_id": spec_id}, priority=2)
        return {"spec_id": spec_id}
    return {"ack": task["type"]}


def code_developer(task: dict, ctx: HandlerContext) -> Any:
    if task["type"] == "spec_created":
        _work(ctx)
        spec_id = (task.get("content") or {}).get("spec_id", "?")
        ctx.send("project_manager", "needs_verification", {"spec_id": spec_id})
        return {"implemented": spec_id}
    return {"ack": task["type"]}


def project_manager(task: dict, ctx: HandlerContext) -> Any:
    if task["type"] == "periodic":
        ctx.send("all", "roadmap_updated", {"at": time.time()})
        return None
    if task["type"] in ("needs_verification", "bug_report"):
        _work(ctx)
        return {"verified": task.get("content")}
    return {"ack": task["type"]}


def assistant(task: dict, ctx: HandlerContext) -> Any:
    if task["type"] == "periodic":
        _work(ctx)
        ctx.send("project_manager", "bug_report", {"severity": "low", "n": next(_counter)})
        return None
    return {"ack": task["type"]}


def _acknowledge(task: dict, ctx: HandlerContext) -> Any:
    if task["type"] != "periodic":
        _work(ctx)
    return {"ack": task["type"]}


HANDLERS = {"architect": architect, "code_developer": code_developer,
            "project_manager": project_manager, "assistant": assistant}


def handle(task: dict, ctx: HandlerContext) -> Any:
    """Dispatch on the agent's name; agents without a demo role just acknowledge."""
    return HANDLERS.get(ctx.agent, _acknowledge)(task, ctx)
