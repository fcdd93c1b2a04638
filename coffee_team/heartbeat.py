"""The heartbeat file: ``data/agent_status/<agent>_status.json``, its path, writer and reader.

The agent writes it (atomically, so readers see the old or the new file, never half of one);
the watchdog and ``coffee-team status`` read it, through HeartbeatFiles when they read it
again and again (each file parsed again only once it was replaced). Keeping path, writer and
reader here means the three can never disagree about where the file is or what an unreadable
one means. The first heartbeat of an instance is also announced on the ready socket (the boot's
stagger).
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import _socket  # not socket: see queue/wake.py
import threading
import time
from pathlib import Path
from typing import Any

from .layout import atomic_write_private

# atomic_write_private's temp name is per process: two threads of one agent writing at once
# would share it, so writes are serialised.
_WRITE_LOCK = threading.Lock()


def heartbeat_path(status_dir: Path, agent: str) -> Path:
    return Path(status_dir) / f"{agent}_status.json"


def write_heartbeat(status_dir: Path, agent: str, beat: dict[str, Any]) -> None:
    """Replace the agent's heartbeat file; OSError (e.g. an unwritable directory) propagates."""
    text = json.dumps(beat, indent=1) + "\n"
    with _WRITE_LOCK:
        atomic_write_private(heartbeat_path(status_dir, agent), text)


def read_heartbeat(status_dir: Path, agent: str) -> dict[str, Any]:
    """The agent's heartbeat, or {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(heartbeat_path(status_dir, agent).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_beat(beat: dict[str, Any]) -> float | None:
    """When the heartbeat was written (epoch seconds), or None if it does not say."""
    try:
        return float(beat["last_heartbeat"])
    except (KeyError, TypeError, ValueError):
        return None


def beat_as_instance(beat: dict[str, Any], host: str) -> dict[str, Any] | None:
    """A heartbeat file as an ``agent_instances`` row (queue/instances.py's columns), or None
    for a file that names no process. A SQLite team runs on one host and its agents write no
    rows (agent/instance.py): their files are what the rows would say, fresher."""
    from .liveness import ready_to_claim
    pid, state = beat.get("pid"), beat.get("state")
    if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(state, str):
        return None
    task = beat.get("current_task") if isinstance(beat.get("current_task"), dict) else {}
    started = beat.get("started_at")
    waiting = beat.get("waiting_for")
    return {"agent": beat.get("agent"), "host": host, "pid": pid, "proc_start": None,
            "started_at": started if isinstance(started, (int, float))
            and not isinstance(started, bool) else None,
            "heartbeat": last_beat(beat), "ready": ready_to_claim(state, waiting),
            "state": state, "task_id": task.get("id"), "task_type": task.get("type"),
            "task_started_at": task.get("started_at"), "waiting_for": waiting, "restarts": 0}


def instances_of(team: Any, queue: Any) -> dict[str, dict[str, Any]]:
    """Every agent's instance row, by agent (none: never started): the database's where the
    agents write them (PostgreSQL: pods and hosts that cannot read each other's files), else
    the heartbeat files of this host, the one a SQLite team runs on."""
    if team.is_postgres:
        return queue.instances()
    rows = {}
    for name in team.names:
        row = beat_as_instance(read_heartbeat(team.status_dir, name), team.host)
        if row is not None:
            rows[name] = {**row, "agent": name}
    return rows


class HeartbeatFiles:
    """The agents' heartbeats, each file parsed again only when a stat shows it was replaced
    (the writer renames a new file over it: another inode, size or mtime), so a reader that
    comes back every few seconds pays a stat per agent, not a read and a parse."""

    def __init__(self):
        self._known: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def read(self, status_dir: Path, agent: str) -> dict[str, Any]:
        """As read_heartbeat."""
        try:
            st = os.stat(heartbeat_path(status_dir, agent))
        except OSError:
            self._known.pop(agent, None)
            return {}
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._known.get(agent)
        if known is not None and known[0] == signature:
            return known[1]
        beat = read_heartbeat(status_dir, agent)
        self._known[agent] = (signature, beat)
        return beat

    def forget(self, keep) -> None:
        """Drop every agent not in ``keep``."""
        keep = set(keep)
        for agent in set(self._known) - keep:
            del self._known[agent]


# --- the ready poke --------------------------------------------------------------------------
# An agent whose first heartbeat is written pokes the watchdog's ready socket with its name, so
# a boot in priority order moves on to the next group within milliseconds. The poke is only a
# hint, as in queue/wake.py: the watchdog trusts the heartbeat file (policy.started_since), and
# without a socket (a path too long for AF_UNIX, nobody bound) it reads the files on a timer.
READY_SOCKET = "ready.sock"
_UNIX_PATH_MAX = 107


def ready_socket_path(run_dir: Path) -> Path | None:
    path = Path(run_dir) / READY_SOCKET
    return path if len(os.fsencode(path)) <= _UNIX_PATH_MAX else None


def announce_ready(run_dir: Path, agent: str) -> None:
    """Poke the watchdog, if it listens; never raises (a lost poke costs a timer tick)."""
    path = ready_socket_path(run_dir)
    if path is None:
        return
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.sendto(agent.encode(), str(path))
        finally:
            sock.close()
    except OSError:  # no watchdog launching right now, its buffer is full, no fds left
        pass


class ReadyInbox:
    """The watchdog's end: ``wait(timeout)`` returns the names poked meanwhile (maybe none)."""

    def __init__(self, run_dir: Path):
        self.path = ready_socket_path(run_dir)
        self.sock: _socket.socket | None = None
        if self.path is None:
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            self.path.unlink(missing_ok=True)  # one watchdog per team: a leftover is ours
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self.sock = sock

    def wait(self, timeout: float) -> set[str]:
        if self.sock is None:
            time.sleep(max(0.0, timeout))
            return set()
        names: set[str] = set()
        if select.select([self.sock], [], [], max(0.0, timeout))[0]:
            try:
                while True:
                    names.add(self.sock.recv(256).decode(errors="replace"))
            except OSError:  # EAGAIN: drained
                pass
        return names

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> ReadyInbox:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
