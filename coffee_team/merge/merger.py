"""The merger: takes approved items one at a time per target, merges them (attempt.py) and
records what came of it — a thread of the watchdog, one per host.

Why the watchdog: one owner per host's repository serves approved items in order and one at
a time per target without a lock of its own (the database's row is the lock: at most one
``checking`` item per target, on SQLite and PostgreSQL alike); a merge never waits for an
author's hours-long run or a budget pause, as it would inside the author's agent; a person's
approval needs no agent at all; and a watchdog that restarts finds the merges it left under
way and makes them again (``release_merges``: the target only ever moves at a merge's end, by
a compare-and-swap, so starting over is safe). git and the checks run as subprocesses with
time limits on this thread, which has its own database connection: supervisord's events and
the watchdog's protocol loop never wait on a merge.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from .. import retry
from ..errors import describe_error
from ..queue.db import database_errors
from . import review, rules
from .attempt import Checks, attempt, scratch_for

POLL_INTERVAL = 2.0  # seconds between looks for approved items when there were none


class Merger:
    def __init__(self, queue: Any, team: Callable[[], Any], log: Callable[[str], None],
                 host: str = "", clock: Callable[[], float] = time.time):
        self.queue, self.team, self.log, self.host, self.clock = queue, team, log, host, clock
        self.checks = Checks()
        self._stop = threading.Event()

    def pass_once(self) -> Optional[dict]:
        """Merge the next due approved item, if any; returns it (None: nothing to merge)."""
        item = self.queue.begin_merge(self.host) if self.queue.merge_due(self.host) else None
        if item is not None:
            self.merge(item)
        return item

    def merge(self, item: dict) -> rules.Ending:
        team = self.team()
        spec = next((a for a in team.agents if a.name == item["author"]), None)
        merge = spec.workspace.merge if spec is not None and spec.workspace is not None else None
        if merge is None or merge.into != item["target"]:
            result = rules.Attempt(rules.ERROR, detail=f"{item['author']} no longer merges "
                                                       f"into {item['target']} (team file)")
        else:
            scratch = scratch_for(team.root, item["id"])
            result = attempt(team.root, item, merge.checks, merge.check_timeout, scratch,
                             self.checks)
        if self._stop.is_set():  # a check cut off by the stop: the next watchdog merges again
            return rules.Ending("release")
        end = rules.ending(result, item["target"], item["reason"])
        messages = []
        if end.tell_author:
            messages.append(review.merge_failed(item, result.outcome, result.detail,
                                                result.output))
        if end.broadcast:
            messages.append(review.branch_updated(item, result.old_head, result.new_head))
        # the target may have moved already: the record must follow, however busy the database
        self.durably(self.queue.finish_merge, item["id"], end.action,
                     merged_head=result.new_head, reason=end.reason,
                     output=result.output or None, messages=messages,
                     retry_at=self.clock() + end.retry_after)
        self.log(f"merge #{item['id']} ({item['branch']} {item['head'][:10]} into "
                 f"{item['target']}): {end.action}" + (f": {end.reason}" if end.reason else ""))
        if end.warn:
            self.queue.notify("WARNING", item["author"], f"⚠️ merge #{item['id']} waits: "
                              f"{item['target']} is checked out with changes in the way",
                              f"{end.reason}; commit or stash them: the merge is tried again "
                              f"every {rules.BLOCKED_RETRY:g} s")
        return end

    def durably(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``operation``, retried with backoff while the database is unusable (locked, gone):
        an item left ``checking`` would hold its target until the next watchdog. None if the
        merger stops first."""
        errors = database_errors()
        for delay in retry.delays(0.1, retry.DB_RETRY_MAX):
            try:
                return operation(*args, **kwargs)
            except errors as exc:
                self.log(f"merge queue: {describe_error(exc)}; retrying")
                if self._stop.wait(delay):
                    return None

    def run(self, interval: float = POLL_INTERVAL) -> None:
        released = self.durably(self.queue.release_merges, self.host)
        if released:
            self.log(f"{released} merge(s) left under way by the last watchdog: merging them "
                     f"again")
        while not self._stop.is_set():
            try:
                # not the database opened any more: wait (the watchdog says why)
                while self.queue.check_file() is None and not self._stop.is_set() \
                        and self.pass_once() is not None:
                    pass
            except Exception as exc:  # noqa: BLE001 (the database may be busy or gone)
                self.log(f"merge queue: {describe_error(exc)}")
            self._stop.wait(interval)

    def start(self, interval: float = POLL_INTERVAL) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(interval,), name="merger", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop after the merge under way; a check that runs is ended now (its item stays
        ``checking`` until the next watchdog releases it)."""
        self._stop.set()
        self.checks.kill()
