"""The agent's row in ``agent_instances`` (queue/instances.py): which process holds the agent,
its heartbeat and whether it is ready to claim, written beside the heartbeat file.

On one host the file is what the watchdog reads; across the pods of a Kubernetes cluster the
row is the heartbeat: the probes (``coffee-team agent probe``), ``agent wait-ready``,
``status --k8s`` and the control plane read it. A failed write costs one heartbeat of the row,
never the work (the next beat tries again).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from ..liveness import ready_to_claim
from ..proctable import started_of


class InstanceRow:
    def __init__(self, name: str, host: str, db_errors: tuple[type[BaseException], ...]):
        self.name = name
        self.host = host
        self.pid = os.getpid()
        self.proc_start = started_of(self.pid)
        self.db_errors = db_errors
        self.queue: Any = None  # set by start()

    def start(self, queue: Any, durable: Callable[..., Any]) -> int:
        """This process holds the agent from now on; the restarts the row counts."""
        restarts = durable(queue.instance_started, self.name, self.host, self.pid,
                           self.proc_start)
        self.queue = queue
        return restarts

    def beat(self, status: dict[str, Any]) -> bool:
        """The heartbeat ``status`` (the file's fields) in the row; False if not written."""
        if self.queue is None:
            return False
        task = status.get("current_task") or {}
        try:
            return self.queue.instance_beat(
                self.name, self.host, self.pid, heartbeat=status["last_heartbeat"],
                ready=ready_to_claim(status["state"], status.get("waiting_for")),
                state=status["state"], task_id=task.get("id"), task_type=task.get("type"),
                task_started_at=task.get("started_at"), waiting_for=status.get("waiting_for"))
        except self.db_errors:
            return False

    def stopped(self) -> None:
        if self.queue is None:
            return
        try:
            self.queue.instance_stopped(self.name, self.host, self.pid)
        except self.db_errors:  # the row stays "not stopped": the next instance counts a restart
            pass
