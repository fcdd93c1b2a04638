"""The process table in one pass, for the CPU and RSS of every agent's process tree.

On Linux each process is one read of ``/proc/PID/stat`` (parent, CPU times, start, RSS: the
figures psutil would read, from the same file, a few reads per process); a 100-agent status
thereby reads each process once instead of ~5 times through psutil objects. Elsewhere psutil
gives the same rows.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple


class Proc(NamedTuple):
    ppid: int
    cpu_seconds: float  # user + system, since it started
    rss: int            # bytes
    started: float      # epoch seconds


class ProcessTable:
    def __init__(self, procs: dict[int, Proc]):
        self.procs = procs
        self.children: dict[int, list[int]] = {}
        for pid, proc in procs.items():
            self.children.setdefault(proc.ppid, []).append(pid)

    @classmethod
    def read(cls) -> "ProcessTable":
        if os.path.isfile("/proc/self/stat"):
            return cls(_linux_procs())
        return cls(_psutil_procs())

    def tree(self, pid: int) -> list[int]:
        """``pid`` and all its descendants that are in the table, root first (none if
        ``pid`` is not in it)."""
        found, stack = [], [pid]
        while stack:
            current = stack.pop()
            if current in self.procs:
                found.append(current)
                stack.extend(self.children.get(current, ()))
        return found

    def tree_usage(self, pid: int, now: float) -> tuple[float, float]:
        """(average CPU % since start, RSS MB) of ``pid`` and all its descendants: cumulative
        CPU time over the lifetime, so one reading suffices (no sampling sleep)."""
        tree = [self.procs[p] for p in self.tree(pid)]
        if not tree:
            return 0.0, 0.0
        cpu_seconds = sum(proc.cpu_seconds for proc in tree)
        lifetime = max(now - tree[0].started, 1e-3)
        rss = sum(proc.rss for proc in tree)
        return round(100.0 * cpu_seconds / lifetime, 1), round(rss / 2**20, 1)


class LiveTable:
    """The parents of every process, kept between passes: each ``read()`` lists /proc and reads
    only the processes new since the last one (a full pass reads them all: 44 ms with 800
    processes, 120 ms with 1200 on a busy machine, time in which a memory sampler is blind).
    A PID reused between two passes keeps its old parent: a process made and gone within one
    pass is rare, and a wrong parent costs a reading of the wrong tree until the next reuse."""

    def __init__(self, list_pids: Callable[[], list[int]] | None = None,
                 parent_of: Callable[[int], int | None] | None = None):
        self.list_pids = list_pids or _listed_pids
        self.parent_of = parent_of or _parent_of
        self.parents: dict[int, int] = {}

    def read(self) -> "ProcessTable":
        if not os.path.isfile("/proc/self/stat"):
            return ProcessTable.read()
        listed = set(self.list_pids())
        for pid in self.parents.keys() - listed:
            del self.parents[pid]
        for pid in listed - self.parents.keys():
            parent = self.parent_of(pid)
            if parent is not None:
                self.parents[pid] = parent
        return ProcessTable({pid: Proc(parent, 0.0, 0, 0.0)
                             for pid, parent in self.parents.items()})


def _listed_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat`` from its field 3 on (after the command name, which may hold spaces
    and parentheses), or None: gone since the listing, or not ours to read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    try:
        return None if fields is None else int(fields[1])
    except (IndexError, ValueError):
        return None


def rss_of(pids) -> int:
    """Resident bytes of ``pids`` now (one gone counts 0): on Linux one small read of
    ``/proc/PID/statm`` each, so it can be called many times a second."""
    if not os.path.isfile("/proc/self/statm"):
        import psutil
        total = 0
        for pid in pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
        return total
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):  # gone since
            pass
    return total


def started_of(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, to 10 ms), or None if there is none: with
    the PID it names one process, never a later one that reused the PID. One small read on
    Linux (the agents' probes call it every few seconds)."""
    if os.path.isfile("/proc/self/stat"):
        fields = _stat_fields(pid)
        if fields is None:
            return None
        try:
            ticks = int(fields[19])
        except (IndexError, ValueError):
            return None
        return round(_boot_time() + ticks / os.sysconf("SC_CLK_TCK"), 2)
    import psutil
    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.Error:
        return None


def _linux_procs() -> dict[int, Proc]:
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    boot = _boot_time()
    procs: dict[int, Proc] = {}
    for pid in _listed_pids():
        fields = _stat_fields(pid)
        if fields is None:
            continue
        procs[pid] = Proc(ppid=int(fields[1]),
                                cpu_seconds=(int(fields[11]) + int(fields[12])) / ticks,
                                rss=int(fields[21]) * page,
                                started=boot + int(fields[19]) / ticks)
    return procs


def _boot_time() -> float:
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    return 0.0


def _psutil_procs() -> dict[int, Proc]:
    import psutil
    procs: dict[int, Proc] = {}
    for proc in psutil.process_iter(["ppid", "cpu_times", "memory_info", "create_time"]):
        info = proc.info
        if info["cpu_times"] is None or info["memory_info"] is None:
            continue  # no access
        procs[proc.pid] = Proc(info["ppid"], info["cpu_times"].user + info["cpu_times"].system,
                               info["memory_info"].rss, info["create_time"] or 0.0)
    return procs
