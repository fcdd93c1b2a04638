"""One instance per agent (seed CFR-000): the agent program's locks, on one host and across hosts.

The lock is an ``fcntl.flock`` on ``data/run/NAME.lock``: the kernel drops it when the
holder dies, even by kill -9, so a crashed agent never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path
from typing import NamedTuple, Optional

from .. import retry
from ..errors import AgentAlreadyRunningError
from ..parentwatch import pid_alive

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


# --- PostgreSQL: one instance per agent across every host ---------------------------------

# application_name holds 63 bytes; the holder's host is read back from its end, so the host
# keeps this many characters and the agent name is what gets shortened.
HOST_IN_APP_NAME = 40


def application_name(name: str, pid: int, host: str) -> str:
    """'coffee-team NAME pid PID on HOST': who holds a lock, as pg_stat_activity shows it."""
    tail = f" pid {pid} on {host[:HOST_IN_APP_NAME]}"
    return f"coffee-team {name}"[:63 - len(tail)] + tail


class Holder(NamedTuple):
    """The instance holding an agent's advisory lock, as far as PostgreSQL tells."""
    host: Optional[str]  # None: not a coffee-team session, or it ended meanwhile
    pid: Optional[int]
    text: str            # 'PID 123 on host a, started 2024-05-01 10:00:00'


def describe_holder(row) -> Holder:
    """A queue.locks.LockHolder row (or None: nobody holds the key any more) → Holder."""
    if row is None:
        return Holder(None, None, "unknown holder")
    app, addr, since = row
    found = re.search(r" pid (\d+) on (\S+)$", app or "")
    if found:
        pid, host = int(found.group(1)), found.group(2)
        where = f"PID {pid} on host {host}"
    else:
        pid = host = None
        where = f"session {app or '?'} from {addr or 'local socket'}"
    return Holder(host, pid, f"{where}, started {since:%Y-%m-%d %H:%M:%S}" if since else where)


class PgAgentLock:
    """A PostgreSQL advisory lock on a stable 64-bit hash of (schema, agent name), held by a
    dedicated session (queue.locks.AdvisoryLockSession) for the agent's lifetime: agents of
    one team on several hosts share the database, so this is what keeps a name single across
    hosts (a file lock cannot).

    The connection's ``application_name`` carries the holder's host and PID, so a refused
    second instance (or a standby, see standby.py) names them.  PostgreSQL drops the lock with
    its connection; a keeper thread selects on that connection (TCP keepalives catch silent
    network loss) and, when it breaks, reconnects with backoff and takes the lock again.  If
    another instance took it in the meantime, ``on_taken(message)`` runs: by default this
    process exits at once (status 75) without touching the queue, since the new holder
    already requeued our tasks.
    """

    def __init__(self, url: str, name: str, on_taken=None, log=None, retry_max: float = retry.DB_RETRY_MAX,
                 host: Optional[str] = None):
        import socket
        self.url = url
        self.name = name
        self.host = host or socket.gethostname()
        self.on_taken = on_taken or _exit_taken
        self.log = log or (lambda message: None)
        self.retry_max = retry_max
        self.session = None
        self._candidate = None  # a session that asks for the lock until it gets it (take())
        self.key: int | None = None
        self.reacquired = 0  # times the lock was re-taken after a lost connection
        self._stop = None
        self._thread = None

    # --- lock ---
    def _connect(self):
        from ..queue.locks import AdvisoryLockSession
        return AdvisoryLockSession(self.url, application_name=application_name(
            self.name, os.getpid(), self.host))

    def _try_lock(self, session) -> bool:
        if self.key is None:
            from ..queue.locks import agent_lock_key
            self.key = agent_lock_key(session.current_schema(), self.name)
        return session.try_lock(self.key)

    def holder(self, session) -> Holder:
        """The instance holding our key, as far as known."""
        return describe_holder(session.holder(self.key))

    def is_here(self, holder: Holder) -> bool:
        """Does ``holder`` run on this host (a real duplicate, not another host's instance)?"""
        return holder.host == self.host[:HOST_IN_APP_NAME]

    def refusal(self, holder: Holder) -> str:
        return (f"agent {self.name} is already running ({holder.text}; PostgreSQL advisory "
                f"lock); stop it there first (coffee-team stop --agents {self.name})")

    def take(self) -> Optional[Holder]:
        """Take the lock if it is free and keep it from then on (None); else who holds it.

        The asking session stays open between calls, so a standby polling every second
        costs one query, not one connection.  Database errors propagate (the session is
        closed, the next call reconnects)."""
        session = self._candidate = self._candidate or self._connect()
        try:
            if not self._try_lock(session):
                return self.holder(session)
        except BaseException:
            self._candidate = None
            session.close()
            raise
        self._candidate = None
        self._hold(session)
        return None

    def acquire(self) -> "PgAgentLock":
        holder = self.take()
        if holder is not None:
            self.release()
            raise AgentAlreadyRunningError(self.refusal(holder))
        return self

    def _hold(self, session) -> None:
        import threading
        self.session = session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"lock-{self.name}", daemon=True)
        self._thread.start()

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
        for delay in retry.delays(0.1, self.retry_max):
            if self._stop.is_set():
                return
            try:
                session = self._connect()
            except Exception as exc:
                self.log(f"lock reconnect failed ({type(exc).__name__}); retrying in {delay:.1f}s")
                self._stop.wait(delay)
                continue
            try:
                got = self._try_lock(session)
                holder = None if got else self.holder(session).text
            except Exception:
                session.close()
                self._stop.wait(delay)
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
        if self._candidate is not None:
            self._candidate.close()
            self._candidate = None

    def __enter__(self) -> "PgAgentLock":
        return self if self.session is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def take_patiently(lock: PgAgentLock, log) -> Optional[Holder]:
    """lock.take(), retried while the database is briefly down (or partitioned away): that
    must not turn into a FATAL program. A holder on this host whose process is gone (killed
    while the network was cut: the server has not yet noticed its session end) is waited for
    too, rather than refused as a duplicate: a refusal would be a crash, and count as one."""
    from ..errors import describe_error
    from ..queue.db import database_errors
    said = False
    for delay in retry.delays(0.1, lock.retry_max):
        try:
            holder = lock.take()
        except database_errors() as exc:
            log(f"cannot take the advisory lock yet: {describe_error(exc)}; retrying")
            time.sleep(delay)
            continue
        if holder is None or not lock.is_here(holder) or not holder.pid or \
                (holder.pid != os.getpid() and pid_alive(holder.pid)):
            return holder
        if not said:
            said = True
            log(f"the advisory lock is held by a session of PID {holder.pid}, which is gone; "
                f"waiting for the server to end it")
        time.sleep(delay)
    return None  # not reached: retry.delays never ends


def _exit_taken(message: str) -> None:
    import sys
    print(message, file=sys.stderr, flush=True)
    os._exit(75)
