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

from .errors import AgentAlreadyRunningError

PR_SET_PDEATHSIG = 1


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


# --- PostgreSQL: one instance per agent across every host ---------------------------------

class PgAgentLock:
    """A PostgreSQL advisory lock on a stable 64-bit hash of (schema, agent name), held by a
    dedicated session (queue.locks.AdvisoryLockSession) for the agent's lifetime: agents of
    one team on several hosts share the database, so this is what keeps a name single across
    hosts (a file lock cannot).

    The connection's ``application_name`` carries the holder's host and PID, so a refused
    second instance names them.  PostgreSQL drops the lock with its connection; a keeper
    thread selects on that connection (TCP keepalives catch silent network loss) and, when
    it breaks, reconnects with backoff and takes the lock again.  If another instance took
    it in the meantime, ``on_taken(message)`` runs: by default this process exits at once
    (status 75) without touching the queue, since the new holder already requeued our tasks.
    """

    def __init__(self, url: str, name: str, on_taken=None, log=None, retry_max: float = 5.0):
        self.url = url
        self.name = name
        self.on_taken = on_taken or _exit_taken
        self.log = log or (lambda message: None)
        self.retry_max = retry_max
        self.session = None
        self.key: int | None = None
        self.reacquired = 0  # times the lock was re-taken after a lost connection
        self._stop = None
        self._thread = None

    # --- lock ---
    def _connect(self):
        import socket

        from .queue.locks import AdvisoryLockSession
        app = f"coffee-team {self.name} pid {os.getpid()} on {socket.gethostname()}"
        return AdvisoryLockSession(self.url, application_name=app[:63])

    @staticmethod
    def lock_key(schema: str, name: str) -> int:
        import hashlib
        digest = hashlib.blake2b(f"coffee-team:agent:{schema}:{name}".encode(),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _try_lock(self, session) -> bool:
        if self.key is None:
            self.key = self.lock_key(session.current_schema(), self.name)
        return session.try_lock(self.key)

    def holder(self, session) -> str:
        """'PID 123 on host h, since ...' of the session holding our key, as far as known."""
        import re
        row = session.holder(self.key)
        if row is None:
            return "unknown holder"
        app, addr, since = row
        found = re.search(r" pid (\d+) on (\S+)$", app or "")
        where = f"PID {found.group(1)} on host {found.group(2)}" if found else \
            f"session {app or '?'} from {addr or 'local socket'}"
        return f"{where}, started {since:%Y-%m-%d %H:%M:%S}" if since else where

    def acquire(self) -> "PgAgentLock":
        session = self._connect()
        try:
            if not self._try_lock(session):
                holder = self.holder(session)
                raise AgentAlreadyRunningError(
                    f"agent {self.name} is already running ({holder}; PostgreSQL advisory "
                    f"lock); stop it there first (coffee-team stop --agents {self.name})")
        except BaseException:
            session.close()
            raise
        self.session = session
        import threading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"lock-{self.name}", daemon=True)
        self._thread.start()
        return self

    # --- keeper ---
    def _keep(self) -> None:
        import select
        while not self._stop.is_set():
            try:
                readable = select.select([self.session], [], [], 1.0)[0]
            except (OSError, ValueError):
                readable = True
            if self._stop.is_set():
                return
            if readable and not self.session.alive():
                self._reacquire()

    def _reacquire(self) -> None:
        self.log("advisory lock connection lost; reconnecting to take the lock again")
        self.session.close()
        delay = 0.1
        while not self._stop.is_set():
            try:
                session = self._connect()
            except Exception as exc:
                self.log(f"lock reconnect failed ({type(exc).__name__}); retrying in {delay:.1f}s")
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            try:
                got = self._try_lock(session)
                holder = None if got else self.holder(session)
            except Exception:
                session.close()
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            if got:
                self.session = session
                self.reacquired += 1
                self.log("advisory lock taken again")
                return
            session.close()
            self.on_taken(f"agent {self.name}: lost its lock while disconnected; now held by "
                          f"{holder}; exiting")
            self._stop.set()
            return

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None and self._thread is not __import__("threading").current_thread():
            self._thread.join(timeout=3)
        if self.session is not None:
            self.session.close()  # closing the session drops the advisory lock
            self.session = None

    def __enter__(self) -> "PgAgentLock":
        return self if self.session is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _exit_taken(message: str) -> None:
    import sys
    print(message, file=sys.stderr, flush=True)
    os._exit(75)
