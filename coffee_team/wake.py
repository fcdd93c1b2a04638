"""Cross-process wake-ups for idle agents: one unix datagram socket per agent.

A waiting agent binds ``{wake_dir}/{agent}.sock``; ``MessageQueue.send()``
pokes it after commit so hand-over takes milliseconds without polling.  A
poke is only a hint: the waiter always re-checks the database, so a lost or
spurious datagram costs latency at worst, never a task.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
from typing import Iterable, Optional

_UNIX_PATH_MAX = 107


def drain(sock: socket.socket) -> None:
    """Discard every queued poke (non-blocking socket)."""
    try:
        while True:
            sock.recv(64)
    except OSError:  # EAGAIN: empty
        pass


class WakeSockets:
    """One unix datagram socket per waiting agent at {wake_dir}/{agent}.sock."""

    def __init__(self, wake_dir: str):
        self.wake_dir = os.path.abspath(wake_dir)
        os.makedirs(self.wake_dir, mode=0o700, exist_ok=True)
        self._sender: Optional[socket.socket] = None
        self._listeners: dict[str, Optional[socket.socket]] = {}
        self._owned: dict[str, int] = {}  # path -> inode we bound
        self._paths: dict[str, Optional[str]] = {}  # agent -> socket path (None: too long)
        self._lock = threading.Lock()

    def _path(self, agent: str) -> Optional[str]:
        try:
            return self._paths[agent]
        except KeyError:
            path: Optional[str] = os.path.join(self.wake_dir, f"{agent}.sock")
            if len(os.fsencode(path)) > _UNIX_PATH_MAX:  # type: ignore[arg-type]
                path = None
            if len(self._paths) < 4096:  # agent names are few; stay bounded anyway
                self._paths[agent] = path
            return path

    def notify(self, agents: Iterable[str]) -> None:
        sender = self._sender
        if sender is None:
            sender = self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
        for agent in agents:
            path = self._path(agent)
            # access() after the sender's commit: a waiter binds before it
            # checks the database, so a missing file means nobody to wake,
            # and it is ~4x cheaper than a sendto() that fails with ENOENT.
            if path and os.access(path, os.F_OK):
                try:
                    sender.sendto(b"\x01", path)
                except OSError:  # nobody listening, or already poked (buffer full)
                    pass

    def listener(self, agent: str) -> Optional[socket.socket]:
        """Our bound socket for ``agent``, or None (caller polls instead)."""
        with self._lock:
            if agent not in self._listeners:
                self._listeners[agent] = self._bind(agent)
            return self._listeners[agent]

    def _bind(self, agent: str) -> Optional[socket.socket]:
        path = self._path(agent)
        if path is None:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            try:
                sock.bind(path)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or _socket_is_live(path):
                    raise
                os.unlink(path)  # left behind by a dead process
                sock.bind(path)
            os.chmod(path, 0o600)
            self._owned[path] = os.stat(path).st_ino
            return sock
        except OSError:
            sock.close()
            return None  # another live waiter owns it: degrade to polling

    def close(self) -> None:
        for sock in self._listeners.values():
            if sock is not None:
                sock.close()
        for path, inode in self._owned.items():
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        self._listeners.clear()
        self._owned.clear()


def _socket_is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
