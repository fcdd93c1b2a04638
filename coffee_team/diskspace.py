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


def existing(path: Path | str) -> Path:
    """``path``, or its nearest ancestor that exists (what a new file there is written on)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def mount_point(path: Path | str) -> Path:
    """The mount point of ``path``'s filesystem (the disk to name)."""
    path = existing(path)
    try:
        device = os.stat(path).st_dev
        while path.parent != path and os.stat(path.parent).st_dev == device:
            path = path.parent
    except OSError:
        pass
    return path


def full_line(path: Path | str, advice: str = "free some space there") -> str | None:
    """One line naming the full disk ``path`` is on, with its free space and ``advice``; None
    if it has room."""
    where = existing(path)
    free = free_bytes(where)
    if free is None or free >= LOW_BYTES:
        return None
    return (f"disk full: {where} (filesystem {mount_point(where)}) has {free // 1024} KiB free; "
            f"{advice}")


def watched_paths(team: Team) -> list[Path]:
    """Where the team writes: heartbeats, the data directory and a SQLite database's directory."""
    paths = [team.status_dir, team.data_dir]
    if not team.is_postgres:
        paths.append(Path(team.database_url).parent)
    return paths


WAITING = "heartbeats and database writes wait for space"


def problems(team: Team, advice: str = WAITING) -> list[str]:
    """One line per full filesystem the team writes to (none when all have room)."""
    lines, seen = [], set()
    for path in watched_paths(team):
        path = existing(path)
        try:
            device = os.stat(path).st_dev
        except OSError:
            continue
        if device in seen:
            continue
        seen.add(device)
        line = full_line(path, advice)
        if line is not None:
            lines.append(line)
    return lines
