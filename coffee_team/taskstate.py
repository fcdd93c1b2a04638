"""The task state machine as pure functions: no I/O, no clock, no randomness of its own.

    waiting ──release (its last parent completed)──> pending
       │ ──fail_dependency (a parent failed or was cancelled)──> failed
       └──cancel──> cancelled
    awaiting_approval ──approve──> pending        (sent for an agent's approve_before type)
       └──deny | cancel──> cancelled
    pending ──claim──> in_progress ──complete──> completed
       ^                   │ ──fail (retry left, error matches)──> pending (run_after later)
       │                   │ ──fail (last attempt / no match)──> failed
       │                   └──cancel──> cancelled
       └──cancel──> cancelled
    failed | cancelled ──retry──> pending (attempts reset)
    pending (delayed) ──retry──> pending, due now

A task sent ``after`` other tasks (its parents) is ``waiting`` until every parent completed
(``after_parents``); the queue's database triggers apply ``after_parent_finished`` in the
transaction that finishes a parent, so the last completion and the release commit together.
A task is sent ``awaiting_approval`` when its type is one its recipient's ``approve_before``
names (``initial_state``): it is claimed by nobody until a person approves it (then it is
pending like any other) or denies it (cancelled, the reason kept); such a task is not
sent ``after`` others too (the send is refused: a released task would skip the person).

MessageQueue applies these rules inside one write transaction each; the rules live here so they
can be tested exhaustively without a database. Kept outside ``coffee_team.queue`` because the
team file (library layer) builds RetryPolicy values, and importing the queue package would pull
in peewee for every ``load_team``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Sequence, Union

from . import retry

STATES = ("waiting", "awaiting_approval", "pending", "in_progress", "completed", "failed",
          "cancelled")
FINISHED = ("completed", "failed", "cancelled")
# a dedupe_key is held in these; the first three count against max_queue_size
LIVE_STATES = ("waiting", "awaiting_approval", "pending", "in_progress")
QUEUED_STATES = LIVE_STATES[:3]
# A request for a person's approval: waiting, or decided (a timeout decides too), or
# withdrawn because what asked went away (the run ended, the task was cancelled).
APPROVAL_STATES = ("pending", "approved", "denied", "cancelled")
MAX_DELAY_SECONDS = 30 * 86400.0
# Up to +10 % on each backoff: agents failing together (an API outage) do not retry in step.
JITTER = 0.1
# CommandRunner's error text: "<argv0> exited with <code>: <last stderr line>".
_EXIT_CODE = re.compile(r" exited with (-?\d+)(?::|$)")

ACTIONS = {
    # action: (states it may start from, state it leads to)
    "claim": (("pending",), "in_progress"),
    "complete": (("in_progress",), "completed"),
    "cancel": (("waiting", "awaiting_approval", "pending", "in_progress"), "cancelled"),
    "retry": (("failed", "cancelled", "pending"), "pending"),
    "release": (("waiting",), "pending"),
    "fail_dependency": (("waiting",), "failed"),
    "approve": (("awaiting_approval",), "pending"),
    "deny": (("awaiting_approval",), "cancelled"),
}
# What a parent's failure (failed or cancelled) does to a waiting child, per send.
ON_DEPENDENCY_FAILURE = ("fail", "run")


class TransitionError(ValueError):
    """The action is not allowed from the task's current state; ``str()`` is one line."""


def transition(status: str, action: str, actions: dict = ACTIONS, what: str = "a task") -> str:
    """The state ``action`` leads to from ``status``, or TransitionError."""
    sources, target = actions[action]
    if status not in sources:
        allowed = " or ".join(sources)
        raise TransitionError(f"cannot {action} {what} that is {status} (only {allowed})")
    return target


def initial_state(recipient: str, task_type: str,
                  approve_before: Mapping[str, Sequence[str]]) -> str:
    """The state a task is sent in: ``awaiting_approval`` when its type is one its recipient
    must have approved first (``approve_before``: {agent: task types}), else ``pending``."""
    return "awaiting_approval" if task_type in approve_before.get(recipient, ()) else "pending"


# --- merge items: one agent branch's reviewed commits on their way to the target branch ----
#
#   waiting_review ──approve──> approved ──begin──> checking ──merged──> merged
#        │                         ^                   │ ──fail (conflict, a check)──> failed
#        └──reject (changes)──> failed                 └──release (retry later)──> approved
#
# Each item is in exactly one state; the queue applies an action as one UPDATE that names the
# state it expects (merges.py), so two processes can never both move the same item.
MERGE_STATES = ("waiting_review", "approved", "checking", "merged", "failed")
MERGE_FINISHED = ("merged", "failed")
MERGE_LIVE = ("waiting_review", "approved", "checking")  # its commits still on their way
MERGE_ACTIONS = {
    "approve": (("waiting_review",), "approved"),
    "reject": (("waiting_review",), "failed"),
    "begin": (("approved",), "checking"),
    "merged": (("checking",), "merged"),
    "fail": (("checking",), "failed"),
    "release": (("checking",), "approved"),
}


def merge_transition(state: str, action: str) -> str:
    """The state a merge item goes to by ``action`` from ``state``, or TransitionError."""
    return transition(state, action, MERGE_ACTIONS, "a merge item")


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


# The two outcomes are NamedTuples, not frozen dataclasses: every agent imports this module,
# and a dataclass compiles its methods at import (~0.35 ms of CPU each; a NamedTuple ~0.05).
# RetryPolicy stays a dataclass: the team snapshot carries it (team/snapshot.py).
class FailureOutcome(NamedTuple):
    """What a failed attempt leads to (after_failure)."""
    status: str                 # "pending" (retry later) or "failed"
    failures: int               # failed attempts so far, this one included
    run_after: Optional[float]  # when the next try may be claimed (pending only)


def after_failure(policy: RetryPolicy, failures_before: int, error: str, now: float,
                  jitter: float = 0.0, permanent: bool = False) -> FailureOutcome:
    """What a handler failure of an in-progress task leads to; a ``permanent`` one (that no
    retry can fix) is final whatever the policy."""
    failures = failures_before + 1
    if not permanent and failures < policy.attempts and policy.matches(error):
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


def dependency_error(parent_id: int, parent_status: str) -> str:
    """The error of a child failed by its parent (``dependency #41 failed``)."""
    return f"dependency #{parent_id} failed" + (" (cancelled)" if parent_status == "cancelled"
                                                 else "")


class DependencyOutcome(NamedTuple):
    """A task sent after parents: its state from theirs (after_parents)."""
    status: str           # "waiting", "pending" or "failed"
    waiting_on: int       # parents not finished yet
    error: Optional[str]  # for "failed": dependency_error of the parent that failed


def after_parents(parents: Sequence[tuple[int, str]], on_failure: str = "fail"
                  ) -> DependencyOutcome:
    """The state of a task sent after ``parents`` ((id, status) each) at the moment it is sent:
    waiting while one is unfinished; failed at once if one already failed or was cancelled
    (unless ``on_failure`` is "run", which counts a failed parent as done); else pending."""
    check_on_failure(on_failure)
    waiting_on = 0
    for parent_id, status in parents:
        if status not in FINISHED:
            waiting_on += 1
        elif status != "completed" and on_failure == "fail":
            return DependencyOutcome("failed", 0, dependency_error(parent_id, status))
    return DependencyOutcome("waiting" if waiting_on else "pending", waiting_on, None)


def after_parent_finished(child_status: str, waiting_on: int, parent_id: int,
                          parent_status: str, on_failure: str) -> DependencyOutcome:
    """What one parent finishing (into ``parent_status``) does to a child: only a waiting
    child changes; it fails with the parent (``on_failure`` "fail"), or counts the parent done
    and is released when it was the last one (sql_schema's dependency triggers apply this)."""
    check_on_failure(on_failure)
    if child_status != "waiting" or parent_status not in FINISHED:
        return DependencyOutcome(child_status, waiting_on, None)
    if parent_status != "completed" and on_failure == "fail":
        return DependencyOutcome(transition("waiting", "fail_dependency"), waiting_on,
                                 dependency_error(parent_id, parent_status))
    left = waiting_on - 1
    if left <= 0:
        return DependencyOutcome(transition("waiting", "release"), 0, None)
    return DependencyOutcome("waiting", left, None)


def check_on_failure(value: str) -> str:
    if value not in ON_DEPENDENCY_FAILURE:
        raise ValueError(f"on_dependency_failure must be one of "
                         f"{', '.join(ON_DEPENDENCY_FAILURE)}, got {value!r}")
    return value
