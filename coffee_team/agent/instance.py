"""The agent's row in ``agent_instances`` (queue/instances.py): which process holds the agent,
its heartbeat and whether it is ready to claim, written beside the heartbeat file.

On one host the file is what the watchdog reads; across the pods of a Kubernetes cluster the
row is the heartbeat: the probes (``coffee-team agent probe``), ``agent wait-ready``,
``status --k8s`` and the control plane read it. A failed write costs one heartbeat of the row,
never the work (the next beat tries again). The last beat, at a clean stop, says "stopped":
the next instance on the host is no restart.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

from ..liveness import IDLE, WORKING, due, ready_to_claim
from ..proctable import started_of


class InstanceRow:
    def __init__(self, name: str, host: str, db_errors: tuple[type[BaseException], ...],
                 every: float, mono: Callable[[], float] = time.monotonic):
        self.name = name
        self.host = host
        self.pid = os.getpid()
        self.proc_start = started_of(self.pid)
        self.db_errors = db_errors
        self.every = every  # heartbeat_interval: the row is at most that old while it runs
        self.mono = mono
        self.queue: Any = None  # set by start()
        self.written: tuple[float, tuple] | None = None  # (when, what readiness it showed)

    def start(self, queue: Any, durable: Callable[..., Any]) -> int:
        """This process holds the agent from now on; the restarts the row counts."""
        restarts = durable(queue.instance_started, self.name, self.host, self.pid,
                           self.proc_start)
        self.queue = queue
        return restarts

    def beat(self, status: dict[str, Any]) -> bool:
        """The heartbeat ``status`` (the file's fields) in the row, once per ``every``, and at
        once when its readiness changes or it starts or stops running (not for every task a
        busy agent takes: a write per task; the row's task may lag by ``every``); False if
        not written."""
        if self.queue is None:
            return False
        task = status.get("current_task") or {}
        ready = ready_to_claim(status["state"], status.get("waiting_for"))
        running = status["state"] in (IDLE, WORKING)
        shown, now = (ready, "running" if running else status["state"]), self.mono()
        if self.written is not None and self.written[1] == shown and \
                not due(self.written[0], now, self.every):
            return True
        try:
            written = self.queue.instance_beat(
                self.name, self.host, self.pid, heartbeat=status["last_heartbeat"],
                ready=ready, state=status["state"], task_id=task.get("id"),
                task_type=task.get("type"), task_started_at=task.get("started_at"),
                waiting_for=status.get("waiting_for"))
        except self.db_errors:
            return False
        self.written = (now, shown)
        return written
