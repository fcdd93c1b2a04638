"""Fault-injection handlers for tests, chaos runs and benchmarks.

Set ``handler: coffee_team.agent.faults:<name>`` and the knobs in the agent's ``options``.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any

from ..errors import HandlerError
from ..handlers import HandlerContext


def crash(task: dict, ctx: HandlerContext) -> Any:
    """Periodic run: wait ``crash_after`` seconds, then die with exit code ``exit_code``."""
    if task["type"] == "periodic":
        time.sleep(float(ctx.options.get("crash_after", 1.5)))
        os._exit(int(ctx.options.get("exit_code", 1)))
    return {"ack": task["type"]}


def hang(task: dict, ctx: HandlerContext) -> Any:
    """Periodic run: freeze the whole process (SIGSTOP to itself), as a deadlock would.

    A handler that merely blocks is a long task, not a hang: the heartbeat thread keeps
    beating. Only a frozen process stops it; the watchdog's stop then ends in SIGKILL.
    """
    if task["type"] == "periodic":
        os.kill(os.getpid(), signal.SIGSTOP)
    return None


def hog_memory(task: dict, ctx: HandlerContext) -> Any:
    """Periodic run: allocate ``megabytes`` MB and keep it."""
    if task["type"] == "periodic":
        hog_memory.ballast = bytearray(int(ctx.options.get("megabytes", 300)) * 2**20)
        for i in range(0, len(hog_memory.ballast), 4096):
            hog_memory.ballast[i] = 1
    return None


def allocate(task: dict, ctx: HandlerContext) -> Any:
    """A task of type "grow": allocate ``chunk_mb`` MB at a time (a fraction: small objects),
    every page touched, until stopped (memory_limit_mb), or fail at ``max_mb`` (so a guard that
    never fires fails a test rather than exhaust the machine); any other task completes at
    once. With ``keep_trying_s``, a refused allocation (MemoryError) is tried again for that
    long: a handler that keeps the agent at its memory cap, where its other threads are
    refused too."""
    if task["type"] != "grow":
        return {"ack": task["type"]}
    chunk, most = float(ctx.options.get("chunk_mb", 8)), int(ctx.options.get("max_mb", 1000))
    keep_trying = float(ctx.options.get("keep_trying_s", 0))
    held: list[bytearray] = []
    while len(held) * chunk < most:
        try:
            block = bytearray(int(chunk * 2**20))
        except MemoryError:
            if keep_trying <= 0:
                raise
            until = time.monotonic() + keep_trying
            while time.monotonic() < until:
                try:
                    held.append(bytearray(int(chunk * 2**20)))
                except MemoryError:
                    pass
            raise
        block[::4096] = b"\1" * len(block[::4096])
        held.append(block)
    raise HandlerError(f"never stopped: {most} MB allocated")


def record(task: dict, ctx: HandlerContext) -> Any:
    """Append ``<task id>\\n`` to ``options.record_file`` (side-effect counting), sleep
    ``work_seconds``."""
    if task["type"] == "periodic":
        return None
    time.sleep(float(ctx.options.get("work_seconds", 0.0)))
    with open(ctx.options["record_file"], "a") as f:
        f.write(f"{task['id']}\n")
    return {"done": task["id"]}


def relay(task: dict, ctx: HandlerContext) -> Any:
    """A chaos workload: a "work" task appends its id to ``options.record_file`` (an outside
    effect, at least once) and answers with an "ack" follow-up to its own agent (sent with the
    completion, so exactly once); an "ack" just completes."""
    if task["type"] != "work":
        return None
    with open(ctx.options["record_file"], "a") as f:
        f.write(f"{task['id']}\n")
    time.sleep(float(ctx.options.get("work_seconds", 0.0)))
    ctx.send(ctx.agent, "ack", {"source": task["id"]})
    return {"done": task["id"]}


def flaky(task: dict, ctx: HandlerContext) -> Any:
    """Fail the first ``fail_times`` deliveries of each task, then succeed; every call appends
    ``<task id> <attempt> <time>`` to ``options.record_file`` (to measure retry gaps)."""
    if task["type"] == "periodic":
        return None
    with open(ctx.options["record_file"], "a") as f:
        f.write(f"{task['id']} {task['attempts']} {time.time():.3f}\n")
    if task["attempts"] <= int(ctx.options.get("fail_times", 2)):
        raise RuntimeError(f"flaky failure on attempt {task['attempts']}")
    return {"attempt": task["attempts"]}


def long_work(task: dict, ctx: HandlerContext) -> Any:
    """A long task: silent for ``silent_seconds``, then ``ctx.progress()`` every second until
    ``work_seconds`` have passed; appends its id to ``options.record_file`` when done."""
    if task["type"] == "periodic":
        return None
    started = time.monotonic()
    time.sleep(float(ctx.options.get("silent_seconds", 0.0)))
    while (left := float(ctx.options.get("work_seconds", 1.0)) - (time.monotonic() - started)) > 0:
        ctx.progress(f"{left:.0f}s to go")
        time.sleep(min(1.0, left))
    with open(ctx.options["record_file"], "a") as f:
        f.write(f"{task['id']}\n")
    return {"done": task["id"]}


def unstorable(task: dict, ctx: HandlerContext) -> Any:
    """Answer a task whose content names a kind with a result the queue cannot store:
    "datetime", "set", "nan", "deep" (nested 65 levels), "huge" (2 MB); anything else: "ok"."""
    import datetime
    if task["type"] == "periodic":
        return None
    deep: list = []
    for _ in range(64):
        deep = [deep]
    results = {"datetime": lambda: datetime.datetime.now(), "set": lambda: {1, 2},
               "nan": lambda: float("nan"), "deep": lambda: deep,
               "huge": lambda: "x" * (2 * 2**20)}
    return results.get(task["content"], lambda: "ok")()


def fan_in(task: dict, ctx: HandlerContext) -> Any:
    """A fan-in workload: each task appends ``<type> <id> <time>`` to ``options.record_file``
    (so a test can tell a "verify" never ran before its parents completed); a "verify" answers
    with an "ack" follow-up to its own agent (sent with the completion, so exactly once)."""
    if task["type"] in ("periodic", "ack"):
        return None
    with open(ctx.options["record_file"], "a") as f:
        f.write(f"{task['type']} {task['id']} {time.time():.6f}\n")
    time.sleep(float(ctx.options.get("work_seconds", 0.0)))
    if task["type"] == "verify":
        ctx.send(ctx.agent, "ack", {"source": task["id"]})
    return {"done": task["id"]}
