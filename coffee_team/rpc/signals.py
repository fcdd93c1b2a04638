"""supervisord's poll() woken by signals, so a dead agent is reaped (and its work requeued) at
once: part of the ``coffee`` rpcinterface, installed by its factory at each (re)load."""
from __future__ import annotations

import os
import signal

_signal_wakeup = None  # this process's SignalWakeup dispatcher, replaced at each (re)load


def wake_on_signals() -> None:
    """Make a SIGCHLD end supervisord's poll() at once.

    supervisord reaps children only when poll() returns, and a signal alone does not end it
    (PEP 475 retries the call), so a death whose pipes closed just before the child became a
    zombie is reaped up to a second late. Python's wakeup fd turns every signal into a byte on
    a pipe whose read end sits in supervisord's socket map, so poll() returns and it reaps.
    A reload (SIGHUP) closes our descriptors and builds the interfaces again: the stale
    dispatcher is dropped from the map (only if the slot is still ours) and a new pipe made.
    """
    global _signal_wakeup
    from supervisor.medusa import asyncore_25 as asyncore

    stale = _signal_wakeup
    if stale is not None and asyncore.socket_map.get(stale.fd) is stale:
        del asyncore.socket_map[stale.fd]
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    class SignalWakeup(asyncore.file_dispatcher):
        fd = read_end

        def writable(self):
            return False

        def handle_read(self):
            try:
                os.read(read_end, 4096)
            except OSError:
                pass

    _signal_wakeup = SignalWakeup(read_end)
    signal.set_wakeup_fd(write_end)
