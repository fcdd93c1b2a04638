"""Health probes for the watchdog: CPU and RSS of every agent's process tree from one pass over
the process table (coffee_team.proctable); heartbeats: heartbeat.HeartbeatFiles.

CPU is measured without sleeping: the CPU time a tree used since the previous pass, over the
time between the two passes (on the monotonic clock: a wall-clock step is no time passing). Only the previous pass is kept, so an agent that restarted
or left the team leaves nothing behind.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import psutil

from coffee_team.proctable import Proc, ProcessTable


@dataclass(frozen=True)
class Usage:
    cpu_percent: float
    rss_mb: float


def is_frozen(pid: int) -> bool:
    """Stopped (SIGSTOP, a debugger) or gone: a process that cannot be waiting for anything."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED,
                                                psutil.STATUS_TRACING_STOP,
                                                psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return True


def cpu_seconds_since(before: Mapping[int, Proc], before_at: float,
                      tree: Mapping[int, Proc]) -> float:
    """CPU seconds ``tree`` (pid -> Proc now) used since the pass at ``before_at`` that saw
    ``before``. A process seen then counts its growth (the same pid with another start time is
    a new process); one started since counts whole; one already running but not seen then
    (the first pass) counts nothing, as there is no reading to compare with."""
    used = 0.0
    for pid, proc in tree.items():
        seen = before.get(pid)
        if seen is not None and seen.started == proc.started:
            used += max(0.0, proc.cpu_seconds - seen.cpu_seconds)
        elif proc.started >= before_at:
            used += proc.cpu_seconds
    return used


class TreeSampler:
    """CPU% and RSS of process trees (handlers included), every tree from one table pass."""

    def __init__(self, read_table: Callable[[], ProcessTable] = ProcessTable.read,
                 clock: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic):
        self._read_table = read_table
        self._clock = clock  # epoch seconds, as the table's start times
        self._mono = mono
        self._before: dict[int, Proc] = {}
        self._before_at: float | None = None
        self._before_mono = 0.0

    def sample(self, pids: Iterable[int]) -> dict[int, Usage]:
        """Usage of each tree rooted at one of ``pids``; a pid that is gone is left out."""
        table, now, mono = self._read_table(), self._clock(), self._mono()
        usage, seen = {}, {}
        for pid in pids:
            tree = {p: table.procs[p] for p in table.tree(pid)}
            if not tree:
                continue
            cpu = 0.0
            if self._before_at is not None and mono > self._before_mono:
                used = cpu_seconds_since(self._before, self._before_at, tree)
                cpu = 100.0 * used / (mono - self._before_mono)
            rss = sum(proc.rss for proc in tree.values())
            usage[pid] = Usage(round(cpu, 1), round(rss / 2**20, 1))
            seen.update(tree)
        self._before, self._before_at, self._before_mono = seen, now, mono
        return usage

    def tracked(self) -> set[int]:
        """The pids kept from the last pass: only those of the trees sampled then."""
        return set(self._before)
