"""Health probes for the watchdog: heartbeat files and psutil samples of process trees.

CPU is measured without sleeping: psutil's interval-less ``cpu_percent`` compares against the
previous call on the same Process object, so the objects are kept between checks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psutil


def read_heartbeat(status_dir: Path, agent: str) -> float | None:
    """The agent's last heartbeat (epoch seconds), or None if its status file is missing."""
    try:
        data = json.loads((status_dir / f"{agent}_status.json").read_text())
        return float(data["last_heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Usage:
    cpu_percent: float
    rss_mb: float


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
