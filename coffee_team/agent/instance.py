"""The agent's row in ``agent_instances`` (queue/instances.py): which process holds the agent,
its heartbeat and whether it is ready to claim, kept beside the heartbeat file for whoever
cannot read that file: ``agent wait-ready`` in another pod, ``status --k8s`` and the control
plane. (The agent's own probes read the file: they run in its pod.) Only an agent of a
PostgreSQL team keeps one: a SQLite team runs on one host, whose readers take the heartbeat
files instead (heartbeat.instances_of).

The heartbeat never waits for the database (pulse.py): every heartbeat written (``write``)
only hands its fields over, and a thread of this row's own, on its own connection, writes
them once per heartbeat_interval, and at once when the agent's readiness changes or it starts
or stops running (not for every task a busy agent takes: the row's task may lag by the
interval). A failed write costs one beat of the row, never the work. The last heartbeat, at a
clean stop, is written by the stopping thread itself and says "stopped": the next instance on
the host is no restart.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from ..heartbeat import write_heartbeat
from ..liveness import ALLOCATION_RETRY, IDLE, STOPPED, WORKING, due, ready_to_claim
from ..proctable import started_of

START_RETRY = 1.0  # seconds between tries of the row's first write while the database fails


class InstanceRow:
    """``host`` is the Agent: name, team, db_errors and queue (set once it is open)."""

    def __init__(self, host: Any):
        self.host = host
        self.name = host.name
        self.where = host.team.host
        self.pid = os.getpid()
        self.proc_start = started_of(self.pid)
        self.every = host.team.settings.heartbeat_interval  # the row is at most that old
        self.mono = time.monotonic
        self.latest: dict[str, Any] | None = None
        self.written: tuple[float, tuple] | None = None  # (when, what it showed)
        self.started = False  # instance_started went through
        self._posted = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, status_dir: Path, name: str, status: dict[str, Any]) -> None:
        """The heartbeat file (OSError propagates), and its fields handed to the row; as
        write_heartbeat is called."""
        self.post(status)
        write_heartbeat(status_dir, name, status)

    def post(self, status: dict[str, Any]) -> None:
        self.latest = status
        if status["state"] == STOPPED:  # the last beat: on this (the stopping) thread
            self.finish(status)
            return
        if self._thread is None and self.host.queue is not None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-instance",
                                            daemon=True)
            self._thread.start()
        self._posted.set()

    def _run(self) -> None:
        queue = self.host.queue
        try:
            while not self.started and not self._halt.is_set():
                try:
                    queue.instance_started(self.name, self.where, self.pid, self.proc_start)
                    self.started = True
                except (MemoryError, *self.host.db_errors):  # MemoryError: memguard's cap
                    self._halt.wait(START_RETRY)
            while not self._halt.is_set():
                if self.latest is not None:
                    try:
                        self.beat(self.latest)
                    except MemoryError:  # under a Python handler's memory cap: again soon
                        self._halt.wait(ALLOCATION_RETRY)
                        continue
                self._posted.wait(self.every)
                self._posted.clear()
        finally:
            queue.backend.close()  # this thread's own connection

    def beat(self, status: dict[str, Any], force: bool = False) -> bool:
        """The heartbeat ``status`` (the file's fields) in the row if due (see the module);
        False if not written."""
        task = status.get("current_task") or {}
        ready = ready_to_claim(status["state"], status.get("waiting_for"))
        running = status["state"] in (IDLE, WORKING)
        shown, now = (ready, "running" if running else status["state"]), self.mono()
        if not force and self.written is not None and self.written[1] == shown and \
                not due(self.written[0], now, self.every):
            return True
        try:
            written = self.host.queue.instance_beat(
                self.name, self.where, self.pid, heartbeat=status["last_heartbeat"],
                ready=ready, state=status["state"], task_id=task.get("id"),
                task_type=task.get("type"), task_started_at=task.get("started_at"),
                waiting_for=status.get("waiting_for"))
        except self.host.db_errors:
            return False
        self.written = (now, shown)
        return written

    def finish(self, status: dict[str, Any]) -> None:
        """Stop the thread, then write ``status`` (stopped) here, if the row was ever made."""
        self._halt.set()
        self._posted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.started:
            self.beat(status, force=True)
