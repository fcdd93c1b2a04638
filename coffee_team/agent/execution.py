"""Running one task (or periodic run) and recording its outcome: the Agent's work half.

A task ends in exactly one recorded state: completed (result and follow-ups in one
transaction), failed (handler error, timeout, stall cancel), requeued by the caller (stop), or
nothing at all when the task stopped being this agent's while it ran (a cancel): then the
handler is stopped and its result dropped. Completions name the agent, so a task cancelled
between the handler's return and the write is never overwritten.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from .. import events as kinds
from .. import handlers, otel, retry
from . import followups
from ..errors import HandlerError, PermanentError, QueueError, UnstorableResult
from ..handlers import Deferred, HandlerContext, Interrupted
from ..liveness import IDLE, STOPPING
from ..merge import review
from ..output import log


def make_runner(team: Any, spec: Any):
    if spec.llm is not None:
        from ..llm.runner import LlmRunner
        return LlmRunner(team, spec)
    if spec.command:
        return handlers.CommandRunner(spec.command, cwd=str(team.root))
    ref = spec.handler or "coffee_team.agent.demo:handle"
    return handlers.CallableRunner(handlers.load_callable(ref))


def task_dict(task: Any) -> dict[str, Any]:
    fields = ("id", "sender", "recipient", "type", "content", "priority", "attempts")
    return {f: getattr(task, f, None) for f in fields}


class TaskExecution:
    """Mixed into Agent: uses its name, spec, queue, activity, counts, durable() and stopping."""

    memory_guard: Any = None  # memguard.MemoryGuard of an agent with memory_limit_mb (run())

    def _context(self, task: dict) -> HandlerContext:
        tag = f"[#{task['id']}]" if task["id"] is not None else "[periodic]"

        def progress(message: str | None) -> None:
            self.activity.touch(message)
            if message is not None:
                log(self.name, f"{tag} progress: {message}")
        return HandlerContext(agent=self.name, options=dict(self.spec.options),
                              auto_approve=self.spec.auto_approve, on_progress=progress,
                              on_step=self.activity.touch,
                              waiter=lambda ids, timeout: self._wait_for(task, ids, timeout))

    def _wait_for(self, task: dict, ids: list[int], timeout: float | None) -> dict[int, Any]:
        """ctx.wait_for: record the wait (the watchdog's wait-for graph), then poll, ever less
        often, until each task finished (the pulse thread keeps the lease and heartbeat)."""
        if task["id"] is None:
            raise HandlerError("a periodic run cannot wait for tasks")
        try:
            self.durable(self.queue.wait_on, task["id"], self.name, ids)
        except QueueError as exc:
            raise HandlerError(str(exc)) from None
        deadline = None if timeout is None else self.clock() + timeout
        results: dict[int, Any] = {}
        for delay in retry.delays(0.05, 2.0):
            for task_id in ids:
                done = task_id in results or self.durable(self.queue.finished, task_id)
                if done is True:
                    continue
                if done:
                    status, result, error = done
                    if status != "completed":
                        raise HandlerError(f"task #{task_id} {status}: {error or ''}".rstrip(": "))
                    results[task_id] = result
            if len(results) == len(set(ids)):
                return results
            if deadline is not None and self.clock() >= deadline:
                raise HandlerError(f"timed out waiting for task(s) "
                                   f"{', '.join(f'#{i}' for i in ids if i not in results)}")
            time.sleep(delay if deadline is None else max(0.0, min(delay,
                                                                    deadline - self.clock())))
        raise AssertionError("unreachable: retry.delays is endless")

    def _run_handler(self, task: dict) -> tuple[Any, list[dict], list[dict]]:
        """(result, the follow-ups to send, the undelivered ones: followups.py)."""
        ctx, guard = self._context(task), self.memory_guard
        try:
            self.pending_abort = None  # an abort meant for an earlier task is void
            self.activity.begin(task["id"], task["type"], self.spec.timeout_seconds)
            with handlers.time_limit(self.spec.timeout_seconds):
                if guard is not None and getattr(self.runner, "in_process", False):
                    result = guard.run_in_process(self.runner, task, ctx)  # held as it allocates
                else:
                    result = self.runner(task, ctx)
            result, sends, problems = handlers.split_follow_ups(result)
            messages = [{"priority": 5, **msg, "sender": self.name} for msg in ctx.outbox + sends]
            return (result, *followups.sort(messages, self.queue.undeliverable, problems))
        finally:
            if guard is not None:  # its own finally lifts the cap; again, should a signal's
                guard.release()    # exception have come between that finally and the lift
            self.activity.end(STOPPING if self.stopping else IDLE)

    def _send_follow_ups(self, messages: list[dict], undelivered: list[dict]) -> None:
        try:
            self.durable(self.queue.send_many, messages)
            sent = len(messages)
        except QueueError as exc:  # refused as a batch when written (e.g. a full queue)
            undelivered, sent = undelivered + followups.unsent(messages, str(exc)), 0
        self._say_undelivered(None, undelivered, sent)

    def _say_undelivered(self, task_id: int | None, undelivered: list[dict],
                         sent: int) -> None:
        """One WARNING for the follow-ups of a task (or periodic run) that were not sent."""
        if not undelivered:
            return
        title, message = followups.notice(self.name, task_id, undelivered, sent)
        log(self.name, message.removeprefix(f"{self.name}: "))
        self.durable(self.queue.notify, "WARNING", self.name, title, message)

    def _claims_next(self) -> bool:
        """Would the loop claim right after this completion? Then both go in one transaction
        (complete_and_claim). Not when something else comes first: a stop, the periodic run,
        or an llm agent's budget check (before_claim)."""
        return (not self.stopping and self.before_claim is None
                and self.mono() < self.next_periodic)

    def _complete(self, task_id: int, result: Any, messages: list[dict],
                  undelivered: list[dict], step: Optional[tuple] = None
                  ) -> tuple[bool, list[dict]]:
        """Mark done and enqueue the follow-ups in one transaction (never sent twice), the
        undelivered ones recorded in the result, with the task's part in the review and
        merge queue (``step``) if it has one: (completed, the undelivered ones)."""
        try:
            stored = followups.recorded(result, undelivered)
            return self._write_completion(task_id, stored, messages, step), undelivered
        except UnstorableResult:
            raise  # the result itself: process() fails the task with the reason
        except QueueError as exc:  # refused as a batch when written: complete without them
            undelivered = undelivered + followups.unsent(messages, str(exc))
        stored = followups.recorded(result, undelivered)
        try:
            return self._write_completion(task_id, stored, [], step), undelivered
        except QueueError as exc:  # the review request itself (a reviewer gone): without it
            log(self.name, f"task {task_id}: no review requested: {exc}")
            return self.durable(self.queue.mark_completed, task_id, stored,
                                agent=self.name), undelivered

    def _write_completion(self, task_id: int, result: Any, follow_ups: list[dict],
                          step: Optional[tuple]) -> bool:
        if step is not None:
            return self._complete_merge_step(task_id, result, follow_ups, step)
        if self._claims_next():
            completed, self.claimed_next = self.durable(
                self.queue.complete_and_claim, task_id, result, agent=self.name,
                follow_ups=follow_ups)
            return completed
        return self.durable(self.queue.mark_completed, task_id, result, agent=self.name,
                            follow_ups=follow_ups)

    def _merge_step(self, data: dict, result: Any) -> Optional[tuple]:
        """The task's part in the review and merge queue: the verdict of a review it was
        asked for (an answer without one fails the task, saying how to answer), or the new
        commits it left up for review (an llm agent's runner says so)."""
        take = getattr(self.runner, "take_review", None)
        request = take() if take is not None else None
        item_id = review.item_of(data)
        if item_id is not None:
            try:
                return ("verdict", item_id, *review.verdict_of(result))
            except review.NoVerdict as exc:
                raise HandlerError(str(exc)) from None
        return ("request", request) if request is not None else None

    def _complete_merge_step(self, task_id: int, result: Any, follow_ups: list[dict],
                             step: tuple) -> bool:
        if step[0] == "request":
            item = step[1]["item"]
            completed, item_id = self.durable(
                self.queue.request_review, task_id, result, agent=self.name,
                follow_ups=follow_ups, item=item, review=step[1]["review"],
                ask=step[1].get("ask"))
            if item_id is not None:
                log(self.name, f"task {task_id}: commits {item['base'][:10]}..{item['head'][:10]}"
                               f" up for review as merge #{item_id} "
                               f"({item['reviewer'] or 'by a person'})")
            return completed
        _, item_id, approved, comments = step
        item = self.durable(self.queue.merge_item, item_id)
        back = [] if approved or item is None else [review.changes_requested(item, self.name,
                                                                             comments)]
        completed, decided = self.durable(
            self.queue.decide_review, item_id, approved, by=self.name, comments=comments,
            messages=back, task=(task_id, result, self.name, follow_ups))
        if decided:
            log(self.name, f"merge #{item_id}: {'approved' if approved else 'changes requested'}")
        return completed

    def process(self, task: Any) -> None:
        with otel.handling(self.name, task):  # a CONSUMER span when tracing is on
            self._process(task)

    def _process(self, task: Any) -> None:
        data = task_dict(task)
        try:
            result, messages, undelivered = self._run_handler(data)
            step = self._merge_step(data, result)
        except Interrupted as exc:
            if exc.reason == "stop":
                raise
            if exc.reason == "cancelled":
                self._dropped(data, f"{exc}; handler stopped")
                return
            self._fail(data, str(exc))
            if exc.reason == "memory":  # the history shows it beside the watchdog's restarts
                self.durable(self.queue.record_event, self.name, kinds.MEMORY_LIMIT,
                             task_id=data["id"], reason=str(exc))
            return
        except Deferred as exc:
            self._defer(data, exc)
            return
        except HandlerError as exc:
            self._fail(data, str(exc), permanent=isinstance(exc, PermanentError))
            return
        bad = len(undelivered)
        try:
            completed, undelivered = self._complete(data["id"], result, messages, undelivered,
                                                    step)
        except UnstorableResult as exc:  # a handler bug like any other: fail it, carry on
            self._fail(data, f"result not stored: {exc}")
            return
        if completed:
            self.counts["tasks_completed"] += 1
            sent = len(messages) - (len(undelivered) - bad)  # none when refused as a batch
            self._say_undelivered(data["id"], undelivered, sent)  # after the commit: said once
        else:
            self._dropped(data, "no longer in progress for this agent when it finished")

    def _fail(self, data: dict, error: str, permanent: bool = False) -> None:
        log(self.name, f"task {data['id']} ({data['type']}) failed"
                       f"{' (not retried: no retry can fix it)' if permanent else ''}: {error}")
        if self.durable(self.queue.mark_failed, data["id"], error, agent=self.name,
                        permanent=permanent):
            self.counts["tasks_failed"] += 1
        else:
            self._dropped(data, "no longer in progress for this agent when it failed")

    def _defer(self, data: dict, deferred: Deferred) -> None:
        """Back to pending at ``deferred.until`` (no attempt used); intake pauses until then."""
        log(self.name, f"task {data['id']} ({data['type']}) deferred: {deferred}")
        if self.durable(self.queue.defer_task, data["id"], self.name, deferred.until,
                        str(deferred), pause=deferred.pause, also=deferred.pause_also):
            self.counts["tasks_deferred"] += 1
        else:
            self._dropped(data, "no longer in progress for this agent when it was deferred")

    def _dropped(self, data: dict, why: str) -> None:
        log(self.name, f"task {data['id']} ({data['type']}): {why}; result not recorded")
        self.counts["tasks_cancelled"] += 1

    def periodic(self) -> None:
        task = {"id": None, "sender": "scheduler", "recipient": self.name, "type": "periodic",
                "content": None, "priority": 5, "attempts": 1}
        try:
            _, messages, undelivered = self._run_handler(task)
        except (HandlerError, Interrupted) as exc:
            if isinstance(exc, Interrupted) and exc.reason == "stop":
                raise
            log(self.name, f"periodic run failed: {exc}")
            return
        self.counts["periodic_runs"] += 1
        self._send_follow_ups(messages, undelivered)
