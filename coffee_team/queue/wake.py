"""Cross-process wake-ups for idle agents: one unix datagram socket per agent.

A waiting agent binds ``{wake_dir}/{agent}.sock``; ``MessageQueue.send()``
pokes it after commit so hand-over takes milliseconds without polling.  A
poke is only a hint: the waiter always re-checks the database, so a lost or
spurious datagram costs latency at worst, never a task.
"""
from __future__ import annotations

import errno
import functools
import os
import select
# socket's C core: the socket module's enums, selectors and wrappers (~0.5 MB, ~2 ms of
# every agent's start) add nothing to a datagram socket's bind, sendto and recv
import _socket
import threading
from typing import Any, Iterable, Optional

from coffee_team.queue.pg_session import keep_when_idle, pg_poll
from coffee_team.queue.sql_session import listen

_UNIX_PATH_MAX = 107


def drain(sock) -> None:
    """Discard every queued poke (non-blocking socket, or a PgListener)."""
    if not isinstance(sock, _socket.socket):
        sock.drain()
        return
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
        self._sender: Optional[_socket.socket] = None
        self._listeners: dict[str, Optional[_socket.socket]] = {}
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
        for agent in agents:
            path = self._path(agent)
            # access() after the sender's commit: a waiter binds before it
            # checks the database, so a missing file means nobody to wake,
            # and it is ~4x cheaper than a sendto() that fails with ENOENT.
            if path and os.access(path, os.F_OK):
                self._poke(path)

    def _poke(self, path: str) -> None:
        # A datagram counts against the sending socket's buffer until its
        # receiver reads it: one socket poking a broadcast's idle agents runs
        # out after ~200 (EAGAIN), and the rest would wait for their fallback
        # wake. A fresh socket has a fresh budget; what the old one sent stays
        # queued at the receivers when it is closed.
        for _ in range(2):
            sender = self._sender
            if sender is None:
                sender = self._sender = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
                sender.setblocking(False)
            try:
                sender.sendto(b"\x01", path)
                return
            except BlockingIOError:
                sender.close()
                if self._sender is sender:
                    self._sender = None
            except OSError:  # nobody listening
                return

    def listener(self, agent: str) -> Optional[_socket.socket]:
        """Our bound socket for ``agent``, or None (caller polls instead)."""
        with self._lock:
            if agent not in self._listeners:
                self._listeners[agent] = self._bind(agent)
            return self._listeners[agent]

    def _bind(self, agent: str) -> Optional[_socket.socket]:
        path = self._path(agent)
        if path is None:
            return None
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
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
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


# --- PostgreSQL: LISTEN/NOTIFY ------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def pg_channel(agent: str) -> str:
    """The NOTIFY channel of one recipient: a stable, always-valid identifier (agent names
    may be 100 characters; channels are at most 63)."""
    import hashlib
    return "coffee_wake_" + hashlib.blake2b(agent.encode(), digest_size=10).hexdigest()


class PgListener:
    """A dedicated autocommit connection that LISTENs on one recipient's channel.

    ``fileno()`` is the socket to select() on; ``drain()`` consumes the notifications (and
    raises psycopg2.OperationalError once the server closed the connection: the owner then
    drops us and the next ``listener()`` call reconnects)."""

    def __init__(self, connect, agent: str):
        self.conn = connect()
        self.conn.autocommit = True
        keep_when_idle(self.conn)
        self.conn.cursor().execute(listen(pg_channel(agent)))

    def fileno(self) -> int:
        return self.conn.fileno()

    def drain(self) -> None:
        pg_poll(self.conn)
        self.conn.notifies.clear()

    @property
    def closed(self) -> bool:
        return bool(self.conn.closed)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


class PgWake:
    """Wake-ups through LISTEN/NOTIFY, so agents on several hosts wake each other.

    Senders call ``notify_in_transaction()`` inside their write transaction: PostgreSQL
    delivers the notification at COMMIT (never for a rollback) and folds duplicates, so a
    waiter can neither miss a committed task nor wake for one that was not written.  A waiter
    LISTENs on its own connection before it checks the database, then select()s on it.
    Notifications are hints (the waiter re-checks), so another team sharing the database
    under a different schema costs at most a spurious wake-up.
    """

    def __init__(self, connect, local: Optional[WakeSockets] = None):
        self._connect = connect  # () -> new psycopg2 connection
        # With a wake_dir, same-host senders also poke the unix socket after commit (no
        # database round trip in the hand-over) and a waiter selects on both.
        self.local = local
        self._listeners: dict[str, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def notify_in_transaction(backend, agents: Iterable[str]) -> None:
        channels = sorted({pg_channel(a) for a in agents})
        if len(channels) == 1:
            backend.run(backend.prepared.PG_NOTIFY_ONE, channels).fetchone()
        elif channels:
            backend.run(backend.prepared.PG_NOTIFY_MANY, (channels,)).fetchall()

    def notify(self, agents: Iterable[str]) -> None:
        # NOTIFY went out inside the transaction; this is the same-host shortcut only.
        if self.local is not None:
            self.local.notify(agents)

    def listener(self, agent: str):
        with self._lock:
            listener = self._listeners.get(agent)
            if listener is not None and listener.closed:
                listener.close()
                listener = None
            if listener is None:
                listener = PgListener(self._connect, agent)
                sock = self.local.listener(agent) if self.local is not None else None
                if sock is not None and hasattr(select, "epoll"):
                    listener = _EitherListener(listener, sock)
                self._listeners[agent] = listener
            return listener

    def close(self) -> None:
        with self._lock:
            listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            listener.close()
        if self.local is not None:
            self.local.close()


class _EitherListener:
    """One fd (an epoll) that is readable when the unix socket or the LISTEN connection is."""

    def __init__(self, pg: PgListener, sock: _socket.socket):
        self.pg, self.sock = pg, sock
        self.poller = select.epoll()
        self.poller.register(pg.fileno(), select.EPOLLIN)
        self.poller.register(sock.fileno(), select.EPOLLIN)

    def fileno(self) -> int:
        return self.poller.fileno()

    def drain(self) -> None:
        drain(self.sock)
        self.pg.drain()

    @property
    def closed(self) -> bool:
        return self.pg.closed

    def close(self) -> None:  # the socket belongs to the WakeSockets
        self.poller.close()
        self.pg.close()
