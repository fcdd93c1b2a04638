"""Free space where the team writes: a full disk is a reason to wait, not a hang.

Agents cannot write heartbeats (nor SQLite its pages) on a full filesystem. The watchdog asks
``is_full`` before it takes a stale heartbeat for a hang; ``doctor`` and ``status`` name the
full filesystem with ``problems``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .team import Team

LOW_BYTES = 64 * 1024  # less than this available counts as full (a heartbeat file needs a block)


def free_bytes(path: Path | str) -> int | None:
    """Bytes available to unprivileged writers on ``path``'s filesystem; None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_full(path: Path | str) -> bool:
    free = free_bytes(path)
    return free is not None and free < LOW_BYTES


def watched_paths(team: Team) -> list[Path]:
    """Where the team writes: heartbeats, the data directory and a SQLite database's directory."""
    paths = [team.status_dir, team.data_dir]
    if not team.is_postgres:
        paths.append(Path(team.database_url).parent)
    return paths


def problems(team: Team) -> list[str]:
    """One line per full filesystem the team writes to (none when all have room)."""
    lines, seen = [], set()
    for path in watched_paths(team):
        try:
            device = os.stat(path).st_dev
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        free = free_bytes(path)
        if free is not None and free < LOW_BYTES:
            lines.append(f"disk full: {path} has {free // 1024} KiB free; heartbeats and "
                         f"database writes wait for space")
    return lines
