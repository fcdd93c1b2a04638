"""An idle agent gives the C heap's freed pages back (parentwatch.trim_heap, glibc
malloc_trim: ~0.2 MB of an idle agent's RSS, agent_rss.py) when it goes idle after start-up
or work, at most once per TRIM_EVERY (a trim and its page faults cost as much CPU as a task's
queue calls): never on a wait that followed no work, and work within the interval is trimmed
at the first idle wake after it."""
from __future__ import annotations

import platform

import pytest

from coffee_team import parentwatch
from coffee_team.agent import runtime as agent_module
from tests.agent_rig import echo
from tests.agent_rig import signals_restored, start  # noqa: F401 (fixtures)


def test_trims_when_idle_after_work_at_most_once_per_interval(start, monkeypatch):
    h = start(echo)
    h.send(content=1)
    h.send(content=2)
    trims: list[tuple[int, int]] = []  # (tasks handled, waits so far) at each trim
    monkeypatch.setattr(agent_module, "trim_heap",
                        lambda: trims.append((len(h.seen), len(h.queue.wait_timeouts))) or True)
    wakes = iter([lambda: bool(h.send(content=3)),                  # work within the interval
                  lambda: bool(h.clock.advance(agent_module.TRIM_EVERY)) or True,  # a beat later
                  lambda: True,                                     # woken with nothing to do
                  lambda: h.stop() or False])

    h.queue.when_idle = lambda: next(wakes)()
    assert h.run() == 0

    assert len(h.seen) == 3
    # start-up and two tasks, then task 3 only once the interval passed; none after no work
    assert trims == [(2, 0), (3, 2)]


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_trim_heap_reaches_glibc():
    assert hasattr(parentwatch._libc(), "malloc_trim")  # not the no-op fallback below
    assert isinstance(parentwatch.trim_heap(), bool)


def test_trim_heap_without_malloc_trim_is_a_no_op(monkeypatch):
    monkeypatch.setattr(parentwatch, "_libc", lambda: object())  # musl, macOS: no malloc_trim
    assert parentwatch.trim_heap() is False
