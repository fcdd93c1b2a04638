"""memory_limit_mb where the memory is allocated: the agent watches its own process tree while
a task runs, and stops the handler before the tree passes 1.5 × the limit.

The watchdog samples every agent's tree once per ``health_check_interval`` (30 s by default)
and restarts an agent found over the limit twice in a row: a handler allocating 100 MB a
second doubles the limit between two of its looks. This thread reads the tree's RSS as often
as its growth requires (``liveness.memory_next_sample``: a few times a second far below the
limit, every few milliseconds close to it); over the limit it stops the handler through the
same path as a cancel (``host.abort``: Interrupted in the main thread, which kills a
command's process group and fails the task with "memory limit 200 MB exceeded: 301 MB").

Why a sampler and not an rlimit on the command: RLIMIT_AS/RLIMIT_DATA count address space
reserved, not memory used (thread stacks, arenas and heaps that node, Go or the JVM reserve
up front), so a CLI far under the limit in RSS would fail; they hold per process, so a
command that forks escapes them; and they cannot apply to a Python handler, which shares its
process with the agent. The sampler measures what the watchdog measures (the RSS of the
whole tree, handler and its children included) for both kinds of handler.

What it cannot catch: a single allocation larger than the headroom (it is there before the
next reading), and a child started and grown within one table pass (the tree's members are
found again every REDISCOVER seconds; between passes their RSS alone is read). The
watchdog's restart stays the net, also for a Python handler whose memory outlives its task.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from ..liveness import MEMORY_SAMPLE_MAX, WORKING, memory_exceeded, memory_next_sample
from ..output import log
from ..proctable import ProcessTable, rss_of

REDISCOVER = 0.5  # seconds between passes over the process table for the tree's members


class MemoryGuard(threading.Thread):
    """Holds ``host`` (the Agent: name, activity, runner, abort) to ``limit_mb`` while a task
    runs; sleeps while none does."""

    def __init__(self, host: Any, limit_mb: float, *,
                 read_table: Callable[[], ProcessTable] = ProcessTable.read,
                 read_rss: Callable[[list[int]], int] = rss_of,
                 mono: Callable[[], float] = time.monotonic, pid: int | None = None,
                 wait: Callable[[float], Any] | None = None):
        super().__init__(name=f"{host.name}-memory", daemon=True)
        self.host = host
        self.limit_mb = limit_mb
        self.read_table = read_table
        self.read_rss = read_rss
        self.mono = mono
        self.pid = pid or os.getpid()
        self.began = host.activity.subscribe()
        self._halt = threading.Event()
        self.wait = wait or self._halt.wait  # between readings; a stop ends it at once
        self.peak_mb = 0.0  # the highest reading of the last task (tests, logs)
        self.idle_mb: float | None = None  # the reading after the last task ended

    def stop(self) -> None:
        self._halt.set()
        self.began.set()
        if self.is_alive():
            self.join(timeout=10)

    def run(self) -> None:
        activity = self.host.activity
        while not self._halt.is_set():
            self.began.wait()
            self.began.clear()
            task = activity.task
            if activity.state == WORKING and task is not None:
                self.watch(task)
                self.idle_mb = self.read_rss(self.read_table().tree(self.pid)) / 2**20

    def watch(self, task: dict) -> None:
        """Read the tree until ``task`` ends (or is stopped for memory)."""
        activity = self.host.activity
        if self.idle_mb is not None and self.idle_mb > self.limit_mb:
            # over it between tasks, before this handler ran: not this task's doing
            log(self.host.name, f"over memory_limit_mb ({self.idle_mb:.0f} MB) before task "
                                f"{task['id']} began; left to the watchdog's restart")
            while activity.task is task and not self._halt.is_set():
                self.wait(MEMORY_SAMPLE_MAX)
            return
        members: list[int] = []
        found_at = -REDISCOVER
        before: tuple[float, float] | None = None  # (when, MB) of the previous reading
        self.peak_mb = 0.0
        while activity.task is task and not self._halt.is_set():
            now = self.mono()
            handler = getattr(getattr(self.host.runner, "current", None), "pid", None)
            if now - found_at >= REDISCOVER or (handler is not None and handler not in members):
                members, found_at = self.read_table().tree(self.pid), now
            rss_mb = self.read_rss(members) / 2**20
            self.peak_mb = max(self.peak_mb, rss_mb)
            reason = memory_exceeded(rss_mb, self.limit_mb)
            if reason is not None:
                self.host.abort(task["id"], "memory", reason)
                return
            growth = 0.0 if before is None else \
                max(0.0, rss_mb - before[1]) / max(now - before[0], 1e-6)
            before = (now, rss_mb)
            self.wait(memory_next_sample(rss_mb, growth, self.limit_mb))
