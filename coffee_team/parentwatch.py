"""No orphans: the agent, its handlers and the web program follow their parent when supervisord
dies, and what a command leaves running when it exits is ended with it.

A leaf (standard library only), shared by the agent program, the command runner and the web
program. ``die_with_parent`` asks the kernel (Linux PDEATHSIG); ``ParentWatch`` is the portable
fallback that a loop polls.

A command (a handler's, an llm agent's coding CLI) runs in its own process group, but what it
starts may leave that group and its session (``setsid``, a double fork) and keep the command's
stdout open. The agent is a child subreaper (``become_subreaper``, Linux 3.4+): such an
orphan is re-parented to the agent instead of init, so when the command has exited,
``end_leftovers`` finds it among the agent's children, kills it (and what it started in
turn) and reaps it: no process outlives its command, and no zombie is left. Without the
subreaper (a process that is not an agent, e.g. a test), when something was left (the
output held open, a run cut off) the processes whose environment carries the run's marker
(its ``COFFEE_RESULT_FILE``) are killed instead; their parent reaps them. ``leftovers`` is
the pure choice of what to kill and reap.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import time
from typing import Any, NamedTuple, Optional

__all__ = ["die_with_parent", "starter_gone", "pid_alive", "trim_heap", "ParentWatch",
           "become_subreaper", "is_subreaper", "children", "leftovers", "end_leftovers"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
SWEEP_ROUNDS = 200  # passes of end_leftovers: a fork bomb's children are killed as they come
SWEEP_PAUSE = 0.005


@functools.lru_cache(maxsize=None)
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: Any = 0) -> bool:
    try:
        return _libc().prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def trim_heap() -> bool:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim``); True if any
    were. An idle agent keeps ~0.2 MB of pages freed after start-up otherwise (agent_rss.py);
    ~30 us a call."""
    try:
        return _libc().malloc_trim(0) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return False


def die_with_parent(sig: int = signal.SIGTERM, starter: Optional[Any] = None) -> bool:
    """Ask the kernel to send ``sig`` when our parent dies (Linux); True if it will.

    The kernel signals only a death that comes after the request. ``starter``: the pidfile of
    the process that started us (supervisord's). If it died before we asked (our start-up
    outlasted it, as on a loaded machine: we were re-parented meanwhile, and nothing would
    ever signal us), ``sig`` is sent to us now, as the kernel would have."""
    asked = _prctl(PR_SET_PDEATHSIG, int(sig))
    if starter is not None and starter_gone(starter):
        os.kill(os.getpid(), sig)
    return asked


def starter_gone(pidfile: Any) -> bool:
    """Whether the process ``pidfile`` names started us and is gone: it is not our parent, and
    it no longer runs (exited, or a zombie), or we were re-parented to init (its PID went to
    a new supervisord meanwhile). No pidfile tells nothing (removed by a clean shutdown,
    which first stops us): False."""
    try:
        with open(pidfile, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return False
    parent = os.getppid()
    return pid != parent and (parent == 1 or not _running(pid))


def _running(pid: int) -> bool:
    if os.path.isdir("/proc/self"):  # Linux: a zombie has exited
        seen = _seen(pid, None)
        return seen is not None and not seen.zombie
    return pid_alive(pid)  # no /proc (macOS): a zombie counts as running there


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie too; one of another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def become_subreaper(on: bool = True) -> bool:
    """Adopt the orphaned descendants of our children (Linux 3.4+); True if we do."""
    return _prctl(PR_SET_CHILD_SUBREAPER, int(on)) and is_subreaper() == on


def is_subreaper() -> bool:
    value = ctypes.c_int(0)
    return _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value)) and value.value != 0


class ParentWatch:
    """Notices that the process that started us is gone (the portable fallback to PDEATHSIG)."""

    def __init__(self):
        self.parent = os.getppid()

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent


# --- what a command left running ----------------------------------------------------------------

class Seen(NamedTuple):
    """One process as the sweep sees it."""
    ppid: int
    zombie: bool
    marked: bool  # its environment holds the run's marker


def leftovers(procs: dict[int, Seen], me: int, command: int, before: set[int],
              adopting: bool) -> tuple[list[int], list[int]]:
    """(the pids to kill, our zombie children to reap) once ``command`` has exited: the
    processes carrying the run's marker and, when we adopt orphans, our children that came
    during the run; never us, nor the command itself (its Popen reaps it). Pure."""
    kill, reap = [], []
    for pid, seen in sorted(procs.items()):
        if pid in (me, command):
            continue
        ours = adopting and seen.ppid == me
        if seen.zombie:
            if ours:
                reap.append(pid)
        elif seen.marked or (ours and pid not in before):
            kill.append(pid)
    return kill, reap


def children() -> set[int]:
    """Our children now (Linux: /proc/self/task/*/children; elsewhere none are adopted)."""
    found: set[int] = set()
    tasks = f"/proc/{os.getpid()}/task"
    try:  # os.listdir, not glob: glob's import is an agent's start-up, for this one line
        threads = os.listdir(tasks)
    except OSError:
        return found
    for tid in threads:
        with contextlib.suppress(OSError, ValueError):
            with open(f"{tasks}/{tid}/children", "rb") as f:
                found.update(int(pid) for pid in f.read().split())
    return found


def _seen(pid: int, marker: Optional[bytes]) -> Optional[Seen]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rfind(b")") + 2:].split()
        zombie, marked = fields[0] in (b"Z", b"X"), False
        if marker is not None and not zombie:
            with open(f"/proc/{pid}/environ", "rb") as f:
                marked = marker in b"\0" + f.read()
        return Seen(int(fields[1]), zombie, marked)
    except (OSError, IndexError, ValueError):  # gone since, or not ours to read
        return None


def _table(marker: Optional[bytes]) -> dict[int, Seen]:
    """Every process we may read when looking for the marker, else our children."""
    pids = (int(n) for n in os.listdir("/proc") if n.isdigit()) if marker is not None \
        else children()
    return {pid: seen for pid in pids if (seen := _seen(pid, marker)) is not None}


def end_leftovers(command: int, group: Optional[int], before: set[int], marker: Optional[str],
                  search: bool = False) -> list[int]:
    """Kill what ``command`` (exited, not yet reaped when ``group`` is given) left running:
    its process group, then, as ``leftovers`` says, what left the group; reap the adopted
    ones. ``search`` looks for the marker's processes without the subreaper (a sign that
    something was left: the output held open). The pids killed, besides the group's."""
    if group is not None:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    if not os.path.isdir("/proc/self/task"):
        return []
    adopting = is_subreaper()
    if adopting:  # our children are the ones: no need to read every environment
        needle = None
    elif search and marker:
        needle = b"\0COFFEE_RESULT_FILE=" + marker.encode() + b"\0"
    else:
        return []
    ended: set[int] = set()
    for _ in range(SWEEP_ROUNDS):
        kill, reap = leftovers(_table(needle), os.getpid(), command, before, adopting)
        for pid in kill:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in reap:
            with contextlib.suppress(OSError):
                os.waitpid(pid, os.WNOHANG)
        ended.update(kill)
        if not kill and not reap:
            break
        time.sleep(SWEEP_PAUSE)
    return sorted(ended)
