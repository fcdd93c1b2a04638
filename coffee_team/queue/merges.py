"""The review and merge queue's rows (merge_items): an agent's new commits put up for review
with the task that made them, the verdict, the merge's start and end — each change in one
write transaction with the tasks it sends and its journal event, so a review is requested,
or a merge_failed task sent, exactly when the row says so.

MergesMixin is mixed into MessageQueue (``MergesNeeds``: what it uses of the other parts).
Which state an action leads to is taskstate's rule (MERGE_ACTIONS); the task types and their
contents are the caller's (coffee_team.merge): here they are messages like any follow-up.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence

from coffee_team import events as kinds
from coffee_team.errors import ContentError
from coffee_team.queue import sql, sql_merges
from coffee_team.queue.completion import _stored_result
from coffee_team.queue.db import SqlBackend
from coffee_team.taskstate import MERGE_ACTIONS, MERGE_STATES, merge_transition

MAX_OUTPUT_CHARS = 64 * 1024  # of a merge's output kept in its row (the end: where it failed)
MAX_REASON_CHARS = 2000
_ITEM_FIELDS = ("author", "host", "branch", "target", "base", "head", "task_id", "reviewer")


def _verdict_reason(approved: bool, by: str, comments: Optional[str]) -> Optional[str]:
    """What a change request leaves as the item's reason (an approval: none)."""
    return None if approved else _tail(f"changes requested by {by}: {comments or '-'}",
                                       MAX_REASON_CHARS)


def _tail(text: Optional[str], limit: int) -> Optional[str]:
    return text if text is None or len(text) <= limit else "…" + text[-(limit - 1):]


class MergesNeeds(Protocol):
    """What MergesMixin uses from the rest of MessageQueue: its state (core.py), finishing a
    task (completion.py), the sending side (enqueue.py) and asking a person (approvals.py)."""

    backend: SqlBackend
    clock: Callable[[], float]

    def _finish_locked(self, params: tuple, now: float,
                       released: Optional[list] = None) -> bool: ...
    def _prepare_messages(self, messages: Iterable[Mapping[str, Any]],
                          trace: Optional[str] = None) -> list[tuple]: ...
    def _enqueue_locked(self, rows: list[tuple],
                        sent_from: Optional[int] = None) -> tuple[list[int], list[tuple]]: ...
    def _wake_recipients(self, rows: list[tuple]) -> None: ...
    def _ask(self, kind: str, agent: str, subject: str, request: Any, task_id: Optional[int],
             timeout: Optional[float], on_timeout: str) -> int: ...


class MergesMixin:
    """Needs MergesNeeds from the rest of MessageQueue."""

    def request_review(self, task_id: int, result: Any, *, agent: str,
                       follow_ups: Iterable[Mapping[str, Any]] = (), item: Mapping[str, Any],
                       review: Optional[Mapping[str, Any]] = None,
                       ask: Optional[Mapping[str, Any]] = None) -> tuple[bool, Optional[int]]:
        """Complete ``agent``'s task and put the commits it left up for review, in one
        transaction: a merge item (``item``: author, host, branch, target, base, head,
        task_id, reviewer) waiting for review, and ``review`` (a message to the reviewing
        agent, None when a person reviews) with the item's id added to its content as
        ``merge_item``; or ``ask`` ({subject, request}) when a person reviews: an approval of
        kind ``review`` whose request names the item (its decision is
        _decide_review_approval's). (completed, the item's id); nothing is written unless the
        task was still ``agent``'s."""
        result_json = _stored_result(result)
        rows = self._prepare_messages(follow_ups)
        if review is not None:
            self._prepare_messages([review])  # refused here, before anything is written
        missing = [k for k in _ITEM_FIELDS if k not in item]
        if missing:
            raise ContentError(f"merge item without {', '.join(missing)}")
        now, sent, item_id = self.clock(), [], None  # sent: rows to wake, released ones too
        with self.backend.write_transaction():
            if self._finish_locked(("completed", now, result_json, None, task_id, agent), now,
                                   sent):
                item_id = self.backend.insert(sql_merges.INSERT_ITEM, (
                    now, now, *(item[k] for k in _ITEM_FIELDS)))
                if review is not None:
                    content = {**(review.get("content") or {}), "merge_item": item_id}
                    rows += self._prepare_messages([{**review, "content": content}])
                if rows:
                    sent += self._enqueue_locked(rows)[1]
                if ask is not None:
                    self._ask("review", item["author"], ask["subject"],
                              {**(ask.get("request") or {}), "merge_item": item_id},
                              item["task_id"], None, "deny")
                self._journal(now, item["author"], kinds.REVIEW_REQUESTED, item=item_id,
                              base=item["base"], head=item["head"], reviewer=item["reviewer"])
        self._wake_recipients(list(sent))
        return item_id is not None, item_id

    def decide_review(self, item_id: int, approve: bool, *, by: str,
                      comments: Optional[str] = None,
                      messages: Iterable[Mapping[str, Any]] = (),
                      task: Optional[tuple[int, Any, str, Iterable[Mapping[str, Any]]]] = None
                      ) -> tuple[bool, bool]:
        """A verdict on an item waiting for review: approved (the merger takes it), or
        failed with the reviewer's comments, ``messages`` (the merge_failed task back to
        the author) sent with it. ``task`` (task_id, result, agent, follow_ups): the
        reviewing agent's task, completed in the same transaction, whether or not the item
        still waited (another verdict may have come first). (task completed, decided)."""
        action = "approve" if approve else "reject"
        rows = self._prepare_messages(messages)
        if task is not None:
            task_id, result, agent, follow_ups = task
            result_json, task_rows = _stored_result(result), self._prepare_messages(follow_ups)
        reason = _verdict_reason(approve, by, comments)
        now, sent, completed = self.clock(), [], task is None
        with self.backend.write_transaction():
            if task is not None:
                completed = self._finish_locked(
                    ("completed", now, result_json, None, task_id, agent), now, sent)
                if completed and task_rows:
                    sent += self._enqueue_locked(task_rows)[1]
            decided = self._move(item_id, action, now, sql_merges.DECIDE,
                                 (by, comments, reason))
            if decided:
                if rows:
                    sent += self._enqueue_locked(rows)[1]
                self._journal(now, self._author(item_id), kinds.REVIEW_DECIDED, item=item_id,
                              approved=approve, by=by)
        self._wake_recipients(sent)
        return completed, decided

    def _decide_review_approval(self, row: dict, approved: bool, by: str, reason: str,
                                woken: set[str]) -> None:
        """A person's decision on a ``review`` approval, inside its transaction
        (approvals.APPROVAL_EFFECTS): the item's verdict, and when it is a change request
        the request's ``on_reject`` message (the merge_failed task to the author) with the
        person's reason as its ``detail``. An item decided meanwhile is left alone."""
        request, now = row["request"], self.clock()
        item_id = request.get("merge_item")
        comments = reason or None
        if not isinstance(item_id, int) or not self._move(
                item_id, "approve" if approved else "reject", now, sql_merges.DECIDE,
                (by, comments, _verdict_reason(approved, by, comments))):
            return
        message = request.get("on_reject")
        if not approved and isinstance(message, dict):
            content = {**(message.get("content") or {}), "merge_item": item_id,
                       "detail": comments or "-"}
            _, sent = self._enqueue_locked(self._prepare_messages([{**message,
                                                                    "content": content}]))
            woken.update(sent_row[1] for sent_row in sent)
        self._journal(now, self._author(item_id), kinds.REVIEW_DECIDED, item=item_id,
                      approved=approved, by=by)

    def merge_due(self, host: str = "") -> bool:
        """Is an approved item of ``host`` due? (A read: the merger's idle look takes no
        write lock.)"""
        return self.backend.fetchone(sql_merges.ANY_DUE, (host, self.clock())) is not None

    def begin_merge(self, host: str = "") -> Optional[dict]:
        """The next merge of ``host``: the oldest approved item that is due and whose target
        has no merge under way, now ``checking`` (None: nothing to merge now)."""
        now = self.clock()
        with self.backend.write_transaction():
            rows = self.backend.fetchdicts(sql_merges.BEGIN, (now, host, now))
        return rows[0] if rows else None

    def finish_merge(self, item_id: int, action: str, *, merged_head: Optional[str] = None,
                     reason: Optional[str] = None, output: Optional[str] = None,
                     messages: Iterable[Mapping[str, Any]] = (), retry_at: float = 0.0) -> bool:
        """End a merge under way: ``merged``, ``fail`` (with ``messages``: the merge_failed
        task to the author) or ``release`` (approved again, due at ``retry_at``). The
        messages (also the branch_updated broadcast of a merge) go in the same transaction.
        False if the item was not checking (nothing written)."""
        rows = self._prepare_messages(messages)
        now, sent = self.clock(), []
        with self.backend.write_transaction():
            done = self._move(item_id, action, now, sql_merges.FINISH, (
                merged_head, _tail(reason, MAX_REASON_CHARS), _tail(output, MAX_OUTPUT_CHARS),
                retry_at))
            if done:
                if rows:
                    sent = self._enqueue_locked(rows)[1]
                if action != "release":
                    kind = kinds.MERGED if action == "merged" else kinds.MERGE_FAILED
                    self._journal(now, self._author(item_id), kind, item=item_id,
                                  head=merged_head, reason=_tail(reason, 300))
        self._wake_recipients(sent)
        return done

    def release_merges(self, host: str = "") -> int:
        """At a merger's start: the merges its predecessor left under way are approved again
        (their scratch worktrees are gone with it; a merge moves the target only at its
        end, by a compare-and-swap, so starting over is always safe). How many."""
        with self.backend.write_transaction():
            return len(self.backend.fetchall(sql_merges.RELEASE_HOST, (self.clock(), host)))

    def merge_item(self, item_id: int) -> Optional[dict]:
        rows = self.backend.fetchdicts(sql_merges.ITEM, (item_id,))
        return rows[0] if rows else None

    def merge_items(self, state: Optional[str] = None, limit: int = 100) -> list[dict]:
        """The newest items first, of one state or all."""
        if state is None:
            return self.backend.fetchdicts(sql_merges.NEWEST_ITEMS, (limit,))
        if state not in MERGE_STATES:
            raise ContentError(f"merge state {state!r} is not one of {', '.join(MERGE_STATES)}")
        return self.backend.fetchdicts(sql_merges.NEWEST_ITEMS_IN, (state, limit))

    def live_merges(self, author: str) -> int:
        """How many of ``author``'s items are still on their way (review, queue, merge)."""
        return int(self.backend.fetchone(sql_merges.LIVE_OF_AUTHOR, (author,))[0])

    # -- helpers --------------------------------------------------------------------------
    def _move(self, item_id: int, action: str, now: float, statement: str,
              values: Sequence[Any]) -> bool:
        """Inside a write transaction: the item from the state ``action`` starts from to the
        one it leads to (taskstate.MERGE_ACTIONS); False if it was in another state."""
        source = MERGE_ACTIONS[action][0][0]
        target = merge_transition(source, action)
        return self.backend.fetchone(statement, (target, now, *values, item_id, source)) \
            is not None

    def _author(self, item_id: int) -> str:
        return self.backend.fetchone(sql_merges.AUTHOR, (item_id,))[0]

    def _journal(self, now: float, agent: Optional[str], kind: str, **detail: Any) -> None:
        self.backend.insert(sql.INSERT_EVENT, (now, agent, kind, json.dumps(detail, default=str)))
