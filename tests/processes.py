"""Every test that starts a process is marked ``slow``, so the fast tier (``pytest -m "not
slow"``) starts none: conftest installs this watch on every way Python starts a process
(``subprocess`` through its own binding of ``_posixsubprocess.fork_exec`` or through
``os.posix_spawn``; multiprocessing's spawn and forkserver through ``_posixsubprocess``, its
fork through ``os.fork``) and fails an unmarked test that used one.
"""
from __future__ import annotations

import _posixsubprocess
import os
import subprocess

started: list[str] = []  # one entry per process started in this interpreter, in order
WATCHED = ((subprocess, "_fork_exec"), (_posixsubprocess, "fork_exec"), (os, "fork"),
           (os, "posix_spawn"), (os, "posix_spawnp"))


def _recording(what: str, start):
    def recorded(*args, **kwargs):
        started.append(what)
        return start(*args, **kwargs)
    recorded.__wrapped__ = start
    return recorded


def install() -> None:
    for owner, name in WATCHED:
        start = getattr(owner, name, None)
        if start is not None and not hasattr(start, "__wrapped__"):
            setattr(owner, name, _recording(f"{owner.__name__.lstrip('_')}.{name.lstrip('_')}",
                                            start))


def complaint(test: str, marked_slow: bool, since: int) -> str | None:
    """The one-line failure for ``test`` if it started a process (``started[since:]``)."""
    if marked_slow or len(started) <= since:
        return None
    return (f"{test} starts a process ({started[since]}) but is not marked slow: add "
            "@pytest.mark.slow (or pytestmark = pytest.mark.slow) so the fast tier stays fast")
