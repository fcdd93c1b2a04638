"""Saying what a command waits for, while it waits: a command that waits on supervisord
(an answer, a boot, programs to run, an exit) prints ``waiting for WHAT... N s`` on stderr
after FIRST seconds and every EVERY seconds after that, so it never sits there silent.
Only the innermost wait speaks (a call inside a wait for the team to run says nothing of its
own unless it is the one that hangs)."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

FIRST = 2.0
EVERY = 3.0
_active: list[object] = []  # the waits under way, innermost last


@contextmanager
def waiting(what: str | Callable[[], str], first: float = FIRST,
            every: float = EVERY) -> Iterator[None]:
    token = object()
    _active.append(token)
    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        delay = first
        while not stop.wait(delay):
            delay = every
            if not _active or _active[-1] is not token:
                continue
            try:
                text = what() if callable(what) else what
                sys.stderr.write(f"waiting for {text}... {time.monotonic() - started:.0f} s\n")
                sys.stderr.flush()
            except Exception:  # a closed stderr, a describe that failed: stay quiet
                return
    ticker = threading.Thread(target=tick, name="waiting", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        _active.remove(token)
