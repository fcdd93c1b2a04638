"""The task state machine as pure functions: no I/O, no clock, no randomness of its own.

    pending ──claim──> in_progress ──complete──> completed
       ^                   │ ──fail (retry left, error matches)──> pending (run_after later)
       │                   │ ──fail (last attempt / no match)──> failed
       │                   └──cancel──> cancelled
       └──cancel──> cancelled
    failed | cancelled ──retry──> pending (attempts reset)
    pending (delayed) ──retry──> pending, due now

MessageQueue applies these rules inside one write transaction each; the rules live here so they
can be tested exhaustively without a database. Kept outside ``coffee_team.queue`` because the
team file (library layer) builds RetryPolicy values, and importing the queue package would pull
in peewee for every ``load_team``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Union

from . import retry

STATES = ("pending", "in_progress", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")
MAX_DELAY_SECONDS = 30 * 86400.0
# Up to +10 % on each backoff: agents failing together (an API outage) do not retry in step.
JITTER = 0.1
# CommandRunner's error text: "<argv0> exited with <code>: <last stderr line>".
_EXIT_CODE = re.compile(r" exited with (-?\d+)(?::|$)")

ACTIONS = {
    # action: (states it may start from, state it leads to)
    "claim": (("pending",), "in_progress"),
    "complete": (("in_progress",), "completed"),
    "cancel": (("pending", "in_progress"), "cancelled"),
    "retry": (("failed", "cancelled", "pending"), "pending"),
}


class TransitionError(ValueError):
    """The action is not allowed from the task's current state; ``str()`` is one line."""


def transition(status: str, action: str) -> str:
    """The state ``action`` leads to from ``status``, or TransitionError."""
    sources, target = ACTIONS[action]
    if status not in sources:
        allowed = " or ".join(sources)
        raise TransitionError(f"cannot {action} a task that is {status} (only {allowed})")
    return target


@dataclass(frozen=True)
class RetryPolicy:
    """``retry:`` of an agent (or the team default). ``attempts`` counts every try, the first
    one included; ``on`` holds exit codes (ints) and regular expressions (strings) searched in
    the error text; empty means any error is retried."""
    attempts: int = 1
    backoff: float = 1.0
    max_backoff: float = 3600.0
    on: tuple[Union[int, str], ...] = ()

    def matches(self, error: str) -> bool:
        if not self.on:
            return True
        code = exit_code(error)
        for rule in self.on:
            if isinstance(rule, int):
                if code == rule:
                    return True
            elif re.search(rule, error):
                return True
        return False


NO_RETRY = RetryPolicy()


def exit_code(error: str) -> Optional[int]:
    """The exit code of a failed command handler, read from its error text."""
    match = _EXIT_CODE.search(error)
    return int(match.group(1)) if match else None


def backoff_delay(policy: RetryPolicy, failures: int, jitter: float = 0.0) -> float:
    """Seconds before the next try after the ``failures``-th failure (1-based):
    backoff × 2^(failures-1), plus ``jitter`` (0..1) × JITTER of it, capped at max_backoff."""
    base = retry.delay(failures, policy.backoff)  # capped after the jitter, not before
    return min(policy.max_backoff, base * (1.0 + JITTER * min(max(jitter, 0.0), 1.0)))


@dataclass(frozen=True)
class FailureOutcome:
    status: str                 # "pending" (retry later) or "failed"
    failures: int               # failed attempts so far, this one included
    run_after: Optional[float]  # when the next try may be claimed (pending only)


def after_failure(policy: RetryPolicy, failures_before: int, error: str, now: float,
                  jitter: float = 0.0) -> FailureOutcome:
    """What a handler failure of an in-progress task leads to."""
    failures = failures_before + 1
    if failures < policy.attempts and policy.matches(error):
        return FailureOutcome("pending", failures, now + backoff_delay(policy, failures, jitter))
    return FailureOutcome("failed", failures, None)


def check_delay(seconds: float) -> float:
    """A send delay in seconds, or ValueError saying what is allowed."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise ValueError(f"delay must be a number of seconds from 0 to {MAX_DELAY_SECONDS:.0f}"
                         f" (30 days), got {seconds!r}")
    return float(seconds)


def escalated_priority(priority: int, waiting_since: float, now: float,
                       after: float) -> Optional[int]:
    """The priority one step more urgent if the task waited ``after`` seconds since
    ``waiting_since`` (its due time or its last escalation), else None."""
    if priority <= 0 or now - waiting_since < after:
        return None
    return priority - 1


def attempt_label(status: str, failures: int, policy: RetryPolicy) -> str:
    """``k/N`` for listings: the try running, next or (failed) last; N the policy's tries."""
    k = failures if status == "failed" and failures else failures + 1
    return f"{k}/{max(policy.attempts, k)}"
