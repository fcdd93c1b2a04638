"""die_with_parent when the parent died before the request (parentwatch.starter_gone): the
kernel would never signal it, so the program signals itself. The live case, an agent started
after supervisord's kill -9, is in tests/integration/test_team_lifecycle.py."""
from __future__ import annotations

import os
import signal

import pytest

from coffee_team import parentwatch

NO_SUCH_PID = 2**22 + 7  # above any pid_max


def pidfile(tmp_path, pid) -> str:
    path = tmp_path / "supervisord.pid"
    path.write_text(f"{pid}\n")
    return str(path)


def test_a_starter_that_no_longer_runs_and_is_not_our_parent_is_gone(tmp_path):
    assert parentwatch.starter_gone(pidfile(tmp_path, NO_SUCH_PID))


def test_our_parent_or_a_running_starter_is_not_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(parentwatch.os, "getppid", lambda: 4242)  # (ours may be init)
    assert not parentwatch.starter_gone(pidfile(tmp_path, 4242))
    # a wrapper between supervisord and us: supervisord runs, it is just not our parent
    assert not parentwatch.starter_gone(pidfile(tmp_path, os.getpid()))
    # ...unless we were re-parented to init: the PID went to another process meanwhile
    monkeypatch.setattr(parentwatch.os, "getppid", lambda: 1)
    assert parentwatch.starter_gone(pidfile(tmp_path, os.getpid()))


@pytest.mark.parametrize("content", [None, "", "not a pid"])
def test_no_pidfile_tells_nothing(tmp_path, content):
    path = tmp_path / "supervisord.pid"
    if content is not None:
        path.write_text(content)
    assert not parentwatch.starter_gone(str(path))


def test_a_zombie_does_not_run(tmp_path, monkeypatch):
    stat = {NO_SUCH_PID: b"7 (supervisord) Z 1 7 7 0", 8: b"8 (a (b) c) S 1 8 8 0"}

    def fake_open(path, mode="r", **kwargs):
        pid = int(path.split("/")[2])
        if pid not in stat:
            raise FileNotFoundError(path)
        import io
        return io.BytesIO(stat[pid])
    monkeypatch.setattr(parentwatch, "open", fake_open, raising=False)
    assert not parentwatch._running(NO_SUCH_PID)
    assert parentwatch._running(8)  # a ")" in its name is not the end of it
    assert not parentwatch._running(9)


def test_die_with_parent_signals_now_when_the_starter_is_gone(tmp_path, monkeypatch):
    asked, got = [], []
    monkeypatch.setattr(parentwatch, "_prctl", lambda option, arg=0: asked.append(arg) or True)
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: got.append(signum))
    try:
        assert parentwatch.die_with_parent(signal.SIGUSR2, starter=pidfile(tmp_path, os.getppid()))
        assert got == []  # our parent started us and runs: the kernel will signal its death
        assert parentwatch.die_with_parent(signal.SIGUSR2,
                                           starter=pidfile(tmp_path, NO_SUCH_PID))
        assert got == [signal.SIGUSR2]  # it died before the request: signalled at once
        assert asked == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
