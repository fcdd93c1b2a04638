"""Health probes for the watchdog: psutil samples of process trees (heartbeats: heartbeat.py).

CPU is measured without sleeping: psutil's interval-less ``cpu_percent`` compares against the
previous call on the same Process object, so the objects are kept between checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import psutil


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


class TreeSampler:
    """CPU% and RSS of a process and all its descendants (handlers included)."""

    def __init__(self):
        self._trees: dict[int, dict[int, psutil.Process]] = {}

    def sample(self, pid: int) -> Usage | None:
        known = self._trees.setdefault(pid, {})
        try:
            root = known.get(pid) or psutil.Process(pid)
            tree = [root] + root.children(recursive=True)
        except psutil.Error:
            self._trees.pop(pid, None)
            return None
        cpu, rss, current = 0.0, 0, {}
        for proc in tree:
            tracked = known.get(proc.pid)
            try:
                if tracked is None:
                    tracked = proc
                    tracked.cpu_percent(None)  # prime: the first reading is always 0.0
                cpu += tracked.cpu_percent(None)
                rss += tracked.memory_info().rss
                current[proc.pid] = tracked
            except psutil.Error:
                continue
        self._trees[pid] = current
        return Usage(round(cpu, 1), round(rss / 2**20, 1))
