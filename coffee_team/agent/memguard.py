"""memory_limit_mb where the memory is allocated: the agent holds its process tree below
1.5 × the limit while a task runs, and fails the task saying so.

The watchdog samples every agent's tree once per ``health_check_interval`` (30 s by default)
and restarts an agent found over the limit twice in a row: a handler allocating 100 MB a
second doubles the limit between two of its looks. The agent does two things of its own.

A sampler thread (``MemoryGuard``) reads the tree's RSS as often as its growth requires
(``liveness.memory_next_sample``: a few times a second far below the limit, every few
milliseconds close to it); over the limit it stops the handler through the same path as a
cancel (``host.abort``: Interrupted in the main thread, which kills a command's process group
and fails the task with "memory limit 200 MB exceeded: 301 MB"). It is the whole guard for a
``command:`` handler and an llm CLI, which are child processes: an rlimit does not suit them
(RLIMIT_AS/RLIMIT_DATA count address space mapped, not memory used, so a node, Go or JVM CLI
that maps its heaps up front would fail far under the limit in RSS; and they hold per
process, so a command that forks escapes them).

A Python handler runs in the agent's own process, on the main thread, where a loop that
allocates holds the GIL the sampler needs for each reading, and allocates about 1 GB/s: the
sampler reads too late on a busy machine (444 MB under a limit of 200, in CI and with 600
processes more here, when its pass over the process table still read every process: 44 ms
with 800, 109 ms while the main thread allocates; proctable.LiveTable reads the new ones
only, 4 ms). So while an in-process handler runs (``run_in_process``) the kernel holds it
where the memory is allocated: the agent's soft RLIMIT_DATA becomes its VmData + 1.4 × the
limit − the tree's RSS (``liveness.memory_data_cap``), restored right after. Since Linux 4.7 RLIMIT_DATA counts
every private writable mapping (brk, mmap, mprotect to writable), reservations left PROT_NONE
(glibc's arenas) only once made writable; a handler's allocation adds at least as much VmData
as RSS, so the allocation refused is the one that would take the tree past 1.4 × the limit:
the handler gets a MemoryError and the task fails with "memory limit 200 MB exceeded: 274 MB"
(``liveness.memory_refused``, with the tree's peak: ``peak_rss``). Memory mapped and not yet touched counts too: a handler that
maps a large buffer it barely uses is refused below the limit in RSS, and the reason says so.
The cap is the process's, not the handler's: any thread may be refused while it holds, so the
agent's threads (heartbeat, lease, instance row, this sampler) take a MemoryError as a pause
of ``ALLOCATION_RETRY`` and carry on; the handler's own refusal lifts it at once.

What neither catches: a child started and grown within one table pass (the tree's members
are found again every REDISCOVER seconds; between passes their RSS alone is read), and a
Python handler's children inherit the cap (each may map 1.4 × the limit). The watchdog's
restart stays the net, also for a Python handler whose memory outlives its task.
"""
from __future__ import annotations

import errno
import os
import resource
import threading
import time
from typing import Any, Callable

from ..handlers import Interrupted
from ..liveness import (ALLOCATION_RETRY, MEMORY_SAMPLE_MAX, WORKING, memory_data_cap,
                        memory_exceeded, memory_next_sample, memory_refused)
from ..output import log
from ..proctable import LiveTable, ProcessTable, rss_of

REDISCOVER = 0.5  # seconds between passes over the process table for the tree's members


def vm_data(field: bytes = b"VmData:") -> int | None:
    """This process's private writable memory mapped (VmData, bytes: what RLIMIT_DATA
    counts), or another field of /proc/self/status; None where /proc does not say."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return None


def peak_rss(reset: bool = False) -> int | None:
    """This process's highest RSS (bytes) since the last reset, or None; ``reset``: from now
    on. Read after a refusal, not the RSS then: Python may free the handler's frames (and
    what they hold) before the agent sees the MemoryError, when the traceback itself could
    not be allocated under the cap."""
    if not reset:
        return vm_data(b"VmHWM:")
    try:
        with open("/proc/self/clear_refs", "wb") as f:  # "5": the peak is the RSS now (4.0)
            f.write(b"5")
    except OSError:
        pass
    return None


def out_of_memory(exc: BaseException | None) -> bool:
    """Is ``exc`` a refused allocation (MemoryError, ENOMEM), or raised from or while
    handling one (a handler's own error around it, CallableRunner's HandlerError)?"""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _get_data_limit() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_DATA)


def _set_data_limit(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


class MemoryGuard(threading.Thread):
    """Holds ``host`` (the Agent: name, activity, runner, abort) to ``limit_mb`` while a task
    runs; sleeps while none does."""

    def __init__(self, host: Any, limit_mb: float, *,
                 read_table: Callable[[], ProcessTable] | None = None,
                 read_rss: Callable[[list[int]], int] = rss_of,
                 mono: Callable[[], float] = time.monotonic, pid: int | None = None,
                 wait: Callable[[float], Any] | None = None,
                 read_data: Callable[[], int | None] = vm_data,
                 read_peak: Callable[[bool], int | None] = peak_rss,
                 get_limit: Callable[[], tuple[int, int]] = _get_data_limit,
                 set_limit: Callable[[int, int], None] = _set_data_limit):
        super().__init__(name=f"{host.name}-memory", daemon=True)
        self.host = host
        self.limit_mb = limit_mb
        self.read_table = read_table or LiveTable().read  # only new processes read each pass
        self.read_rss = read_rss
        self.mono = mono
        self.pid = pid or os.getpid()
        self.began = host.activity.subscribe()
        self._halt = threading.Event()
        self.wait = wait or self._halt.wait  # between readings; a stop ends it at once
        self.peak_mb = 0.0  # the highest reading of the last task (tests, logs)
        self.idle_mb: float | None = None  # the reading after the last task ended
        self.members = [self.pid]  # the tree at the last table pass
        self.read_data, self.read_peak = read_data, read_peak
        self.get_limit, self.set_limit = get_limit, set_limit
        self.saved: tuple[int, int] | None = None  # RLIMIT_DATA before the cap, while capped

    def stop(self) -> None:
        self._halt.set()
        self.began.set()
        if self.is_alive():
            self.join(timeout=10)

    def run(self) -> None:
        activity = self.host.activity
        self.read_table()  # the first, full pass before any task (later ones read new PIDs)
        while not self._halt.is_set():
            self.began.wait()
            self.began.clear()
            task = activity.task
            if activity.state == WORKING and task is not None:
                try:
                    self.watch(task)
                    self.idle_mb = self.read_rss(self.read_table().tree(self.pid)) / 2**20
                except MemoryError:  # refused under an in-process handler's cap: look again
                    self.began.set()
                    self.wait(ALLOCATION_RETRY)

    def watch(self, task: dict) -> None:
        """Read the tree until ``task`` ends (or is stopped for memory)."""
        activity = self.host.activity
        if self.idle_mb is not None and self.idle_mb > self.limit_mb:
            # over it between tasks, before this handler ran: not this task's doing
            log(self.host.name, f"over memory_limit_mb ({self.idle_mb:.0f} MB) before task "
                                f"{task['id']} began; left to the watchdog's restart")
            while activity.task is task and not self._halt.is_set():
                self.wait(MEMORY_SAMPLE_MAX)
            return
        members: list[int] = []
        found_at = -REDISCOVER
        before: tuple[float, float] | None = None  # (when, MB) of the previous reading
        self.peak_mb = 0.0
        while activity.task is task and not self._halt.is_set():
            now = self.mono()
            handler = getattr(getattr(self.host.runner, "current", None), "pid", None)
            if now - found_at >= REDISCOVER or (handler is not None and handler not in members):
                members, found_at = self.read_table().tree(self.pid), now
                self.members = members
            rss_mb = self.read_rss(members) / 2**20
            self.peak_mb = max(self.peak_mb, rss_mb)
            reason = memory_exceeded(rss_mb, self.limit_mb)
            if reason is not None:
                self.host.abort(task["id"], "memory", reason)
                return
            growth = 0.0 if before is None else \
                max(0.0, rss_mb - before[1]) / max(now - before[0], 1e-6)
            before = (now, rss_mb)
            self.wait(memory_next_sample(rss_mb, growth, self.limit_mb))

    # --- an in-process (Python) handler: the kernel refuses what would pass the cap -----------
    def run_in_process(self, call: Callable[[dict, Any], Any], task: dict, ctx: Any) -> Any:
        """``call(task, ctx)`` with the agent's RLIMIT_DATA capped; a refused allocation fails
        the task as Interrupted("memory"), with the tree's RSS at that moment."""
        capped, reason = False, ""
        try:
            capped = self.cap()
            return call(task, ctx)
        except BaseException as exc:
            self.release()  # first: everything after allocates, on every thread
            if not capped or isinstance(exc, Interrupted) or not out_of_memory(exc):
                raise
            reason = memory_refused(self.tree_peak() / 2**20, self.limit_mb)
        finally:
            self.release()
        # raised here, not in the except clause: with no exception being handled, none is its
        # context, and the handler's frames (and the memory they hold) are freed already
        raise Interrupted("memory", reason)

    def cap(self) -> bool:
        """Lower the soft RLIMIT_DATA for a handler about to run (liveness.memory_data_cap);
        False if not: no VmData to read, the tree over the limit already, or a lower limit of
        the agent's own (ulimit -d) stands."""
        data = self.read_data()
        if data is None:
            return False
        cap_mb = memory_data_cap(data / 2**20, self.read_rss(self.members) / 2**20,
                                 self.limit_mb)
        if cap_mb is None:
            return False
        soft, hard = self.get_limit()
        cap = int(cap_mb * 2**20)
        if soft != resource.RLIM_INFINITY and soft <= cap or \
                hard != resource.RLIM_INFINITY and hard < cap:
            return False
        self.saved = (soft, hard)  # before the cap: a stop signal in between still restores
        self.read_peak(True)
        self.set_limit(cap, hard)
        return True

    def tree_peak(self) -> int:
        """The tree's RSS at its highest since the cap (this process's peak, its children's
        RSS now), in bytes."""
        others = self.read_rss([pid for pid in self.members if pid != self.pid])
        return max(self.read_rss(self.members), (self.read_peak(False) or 0) + others)

    def release(self) -> None:
        """Restore the limit from before the cap (again, harmlessly, if a signal came between
        the restore and forgetting it)."""
        if self.saved is not None:
            self.set_limit(*self.saved)
            self.saved = None
