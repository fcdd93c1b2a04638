"""One instance per agent (seed CFR-000) and no orphans when supervisord dies.

The lock is an ``fcntl.flock`` on ``data/agent_status/NAME.lock``: the kernel drops it when the
holder dies, even by kill -9, so a crashed agent never leaves a stale lock behind.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


class AgentAlreadyRunningError(Exception):
    """Another process holds this agent's lock; ``str()`` names its PID and start time."""


class AgentLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, clock=time.time) -> "AgentLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").split()
            os.close(fd)
            pid = holder[0] if holder else "?"
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder[1]))) \
                if len(holder) > 1 and _is_number(holder[1]) else "unknown time"
            name = self.path.stem
            raise AgentAlreadyRunningError(
                f"agent {name} is already running (PID {pid}, started {since}); "
                f"stop it first (coffee-team stop --agents {name})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {clock():.3f}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "AgentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` when our parent dies (Linux); no-op elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class ParentWatch:
    """Notices that the process that started us is gone (the portable fallback to PDEATHSIG)."""

    def __init__(self):
        self.parent = os.getppid()

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent
