"""No orphans when supervisord dies: the agent, its handlers and the web program follow their parent.

A leaf (standard library only), shared by the agent program, the command runner and the web
program. ``die_with_parent`` asks the kernel (Linux PDEATHSIG); ``ParentWatch`` is the portable
fallback that a loop polls.
"""
from __future__ import annotations

import ctypes
import os
import signal

__all__ = ["die_with_parent", "ParentWatch"]

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` when our parent dies (Linux); True if it will."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ParentWatch:
    """Notices that the process that started us is gone (the portable fallback to PDEATHSIG)."""

    def __init__(self):
        self.parent = os.getppid()

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent
