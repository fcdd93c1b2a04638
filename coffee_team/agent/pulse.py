"""The agent's heartbeat thread: liveness while a handler runs, leases that follow the work,
and stall warnings.

The main thread may spend hours inside a handler. This thread keeps the heartbeat file fresh
meanwhile (so a long task is never taken for a hang), renews the running task's lease (so no
expiry, requeue or other host takes work its agent is still doing) and notices when the task
is no longer the agent's (e.g. cancelled) or has gone silent. It only *asks* the main thread to
stop the handler (``host.abort``): the main thread owns the handler and the task's outcome.

It checks every second only while a task runs. An idle agent's thread sleeps until the next
task begins; the main loop beats itself (``idle_beat``) on the tick of its one long wait, so an
idle agent wakes once per heartbeat interval instead of twice a second.

The heartbeat file is written by a thread of its own (``beats``), which never touches the
database: a lease renewal or a main loop that waits for an unreachable database (a partition,
a server whose disk commits at 500 ms) never delays a heartbeat, and the heartbeat says that
the agent waits for the database (``waiting_for``, ``waiting_since``): a wait is no hang.

A frozen process (SIGSTOP, a deadlock holding the GIL) freezes these threads too, so the
heartbeat stops and the watchdog restarts it as before. A main loop stuck outside a handler
and outside a database call is caught by ``liveness.main_loop_alive``: the heartbeat is
withheld.

Every cadence and silence here is measured on the monotonic clock (``host.mono``): a wall clock
that jumps forward must not withhold the heartbeat or call a task stalled, and one that jumps
back must not stop the heartbeat for the size of the jump. The wall clock (``host.clock``) only
stamps what others read: the heartbeat file and the lease in the database. A step of it renews
the lease at once (its expiry, in wall time, moved with the step) and beats.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from ..clock import wall_step
from ..liveness import (ALLOCATION_RETRY, CHECK_EVERY, STARTING, WORKING, due,
                        lease_renew_every, main_loop_alive, stall_check)


class Activity:
    """What the agent is doing: written by the main thread, read by the heartbeat thread.

    Each change is one attribute assignment (atomic under the GIL) and ``task`` is replaced,
    never mutated, so the reader always sees a consistent task. Times shown to people are on
    the wall clock (``clock``); the ones rules compare are monotonic (``mono``): ``tick_at``,
    ``output_at``.
    """

    def __init__(self, clock: Callable[[], float], mono: Callable[[], float]):
        self.clock = clock
        self.mono = mono
        self.state = STARTING
        self.task: dict[str, Any] | None = None  # {"id", "type", "started_at", "deadline"}
        self.last_output_at: float | None = None  # wall, for the heartbeat file
        self.output_at: float | None = None       # monotonic, for the stall rule
        self.progress: str | None = None
        self.tick_at = mono()
        # the main loop's database call under way (durable()) since: monotonic, and wall for
        # the heartbeat file; None: none
        self.db_since: float | None = None
        self.db_since_wall: float | None = None
        self.began = threading.Event()  # wakes the heartbeat thread when work begins
        self.watchers: list[threading.Event] = []  # and the others' (subscribe)

    def subscribe(self) -> threading.Event:
        """An event of its own, set whenever work begins (for a thread besides the pulse)."""
        event = threading.Event()
        self.watchers.append(event)
        return event

    def begin(self, task_id: int | None, task_type: str, limit: float | None = None) -> None:
        """A task starts; ``limit`` is its timeout_seconds (None: none), so the heartbeat
        carries its deadline and ``status`` can say how long is left."""
        now = self.clock()
        self.last_output_at, self.output_at, self.progress = now, self.mono(), None
        self.task = {"id": task_id, "type": task_type, "started_at": now,
                     "deadline": None if limit is None else now + limit}
        self.state = WORKING
        self.began.set()
        for event in self.watchers:
            event.set()

    def end(self, state: str) -> None:
        self.state = state
        self.task = None
        self.tick_at = self.mono()

    def touch(self, message: str | None = None) -> None:
        """Output or ctx.progress(): the handler is getting somewhere."""
        self.last_output_at, self.output_at = self.clock(), self.mono()
        if message is not None:
            self.progress = message

    def tick(self) -> None:
        """The main loop went round once (it is not stuck)."""
        self.tick_at = self.mono()

    def database_call(self, under_way: bool, grace: float = 0.0) -> None:
        """The main loop starts (True: unless one is under way already) or ends a database
        call; a call retried keeps the time of its first try. ``grace``: the seconds the call
        takes by design (the idle wait's timeout): the wait for the database starts after."""
        if not under_way:
            self.db_since = self.db_since_wall = None
            self.tick_at = self.mono()
        elif self.db_since is None:
            self.db_since_wall, self.db_since = self.clock() + grace, self.mono() + grace

    def fields(self) -> dict[str, Any]:
        """The heartbeat file's view of the activity."""
        task = self.task
        return {"state": self.state, "current_task": task,
                "task_id": task and task["id"], "task_started_at": task and task["started_at"],
                "last_output_at": self.last_output_at if task else None,
                "progress": self.progress if task else None}


class Pulse(threading.Thread):
    """Runs ``work_check`` every second while a task runs, and on a thread of its own
    (``beats``) ``beat_check`` (``idle_beat`` while no task runs), until ``stop``; ``check`` is
    both at once. ``host`` is the Agent: it provides name, activity, queue, clock (wall), mono (monotonic), db_errors, write_status(), abort(task_id, reason, message),
    warn_stall(task, silent_for, action), problem(what, message) and recovered(what)."""

    def __init__(self, host: Any, *, heartbeat_interval: float, lease_seconds: float,
                 loop_limit: float, stall_after: float | None, on_stall: str):
        super().__init__(name=f"{host.name}-heartbeat", daemon=True)
        self.host = host
        self.heartbeat_interval = heartbeat_interval
        self.lease_seconds = lease_seconds
        self.renew_every = lease_renew_every(lease_seconds)
        self.loop_limit = loop_limit
        self.stall_after = stall_after
        self.on_stall = on_stall
        self._halt = threading.Event()
        self.last_beat: float | None = None  # every time here is monotonic (host.mono)
        self.lease_task: int | None = None
        self.renewed_at: float | None = 0.0
        self.clock_seen: tuple[float, float] | None = None  # (wall, mono) at the last check
        self.beat_clock_seen: tuple[float, float] | None = None  # the same, of the beats
        self.warned_for: float | None = None  # the last_output_at whose stall was reported
        self.withheld = False
        # (state, task id, current step) last written
        self.shown: tuple[str, int | None, str | None] | None = None
        self._beat_lock = threading.Lock()  # the beats thread and the main loop both beat
        self._began = host.activity.subscribe()  # wakes the beats thread when work begins
        self.beats = threading.Thread(target=self._run_beats, name=f"{host.name}-beats",
                                      daemon=True)

    def start(self) -> None:
        super().start()
        self.beats.start()

    def stop(self) -> None:
        self._halt.set()
        self.host.activity.began.set()  # an idle thread sleeps on it: wake it to see the halt
        self._began.set()
        for thread in (self, self.beats):
            if thread.is_alive():
                thread.join(timeout=10)

    def run(self) -> None:
        activity = self.host.activity
        try:
            while not self._halt.is_set():
                if activity.state != WORKING:  # idle: no lease to keep, no stall to watch
                    activity.began.wait()
                    activity.began.clear()  # state is read again before sleeping on it
                elif not self._halt.wait(min(CHECK_EVERY, self.heartbeat_interval)):
                    try:
                        self.work_check(self.host.mono())
                    except MemoryError:  # a Python handler's memory cap (memguard), lifted
                        self._halt.wait(ALLOCATION_RETRY)  # when the handler hits it: again
        finally:
            self.host.queue.backend.close()  # this thread's own connection

    def _run_beats(self) -> None:
        """The heartbeat, apart from every database call: each second while a task runs;
        idle, once per interval (the main loop beats too, between its waits; whoever comes
        first writes), so a main loop waiting for the database keeps its heartbeat."""
        activity = self.host.activity
        wait = self.heartbeat_interval
        while not self._halt.is_set():
            if self._began.wait(wait):
                self._began.clear()
            if self._halt.is_set():
                return
            now = self.host.mono()
            try:
                if activity.state == WORKING:
                    self.beat_check(now)
                    wait = min(CHECK_EVERY, self.heartbeat_interval)
                else:
                    wait = self.idle_beat(now)
            except MemoryError:  # refused under a Python handler's memory cap: beat again soon
                wait = ALLOCATION_RETRY

    def idle_beat(self, now: float) -> float:
        """From the main loop before it waits idle (and the beats thread): beat if due, or to
        show that the agent went idle (at most once per CHECK_EVERY, so a busy agent does not
        write a file per task). Returns the seconds until the next beat is due: the most the
        loop may wait."""
        activity = self.host.activity
        with self._beat_lock:
            shown = (activity.state, None, None)
            changed = shown != self.shown
            if due(self.last_beat, now, self.heartbeat_interval) or \
                    (changed and due(self.last_beat, now, CHECK_EVERY)):
                self._beat(activity.state, activity.tick_at, now)
                if self.last_beat != now:  # not written (a full disk): again soon
                    return CHECK_EVERY
                self.shown = shown
            elif changed:
                return max(0.0, self.last_beat + CHECK_EVERY - now)
            return max(0.0, self.last_beat + self.heartbeat_interval - now)

    def check(self, now: float) -> None:
        """One look, at ``now`` on the monotonic clock: the beat, then the work."""
        self.beat_check(now)
        self.work_check(now)

    def beat_check(self, now: float) -> None:
        """The heartbeat while a task runs (it never touches the database)."""
        activity = self.host.activity
        with self._beat_lock:
            state, task = activity.state, activity.task
            wall = self.host.clock()
            if wall_step(self.beat_clock_seen, wall, now):
                self.last_beat = None  # beat now
            self.beat_clock_seen = (wall, now)
            # A new task or step (ctx.step, a CLI's tool call) shows within a second, not at
            # the next beat: at most one file write a second however fast the steps come, and
            # tasks shorter than that cost none (a write per task would slow a busy agent).
            shown = (state, task and task["id"], activity.progress if task else None)
            if due(self.last_beat, now, self.heartbeat_interval) or shown != self.shown:
                self._beat(state, activity.tick_at, now)
                self.shown = shown

    def work_check(self, now: float) -> None:
        """The lease and the stall of the running task (on this thread's connection)."""
        activity = self.host.activity
        state, task = activity.state, activity.task
        wall = self.host.clock()
        if wall_step(self.clock_seen, wall, now):  # the lease's expiry moved with the wall clock
            self.renewed_at = None  # renew now
        self.clock_seen = (wall, now)
        on_file = self._on_database_file()
        if state == WORKING and task is not None:
            if task["id"] is not None and on_file:
                self._follow_lease(task, now)
            self._check_stall(task, activity.output_at, now)

    def _on_database_file(self) -> bool:
        """False while the database at the path is not the one opened (renamed, deleted,
        replaced): the lease is left alone, nothing written (the main thread says why)."""
        return self.host.queue.check_file() is None

    def _beat(self, state: str, tick_at: float, now: float) -> None:
        if main_loop_alive(state, tick_at, now, self.loop_limit, self.host.activity.db_since):
            self.withheld = False
            if self.host.write_status():  # else (a full disk) again at the next check
                self.last_beat = now
        elif not self.withheld:  # once per episode: the watchdog takes it from here
            self.withheld = True
            self.host.problem("main loop", f"main loop silent for {now - tick_at:.0f}s; "
                                           f"heartbeat withheld so the watchdog can restart")

    def _follow_lease(self, task: dict[str, Any], now: float) -> None:
        """Renew every lease/3; in between, a cheap read each second notices a cancel."""
        host, task_id = self.host, task["id"]
        if task_id != self.lease_task:  # a new task: its claim just set a full lease
            self.lease_task, self.renewed_at = task_id, now
        try:
            if due(self.renewed_at, now, self.renew_every):
                held = host.queue.renew_lease(task_id, host.name, self.lease_seconds)
                if held:
                    self.renewed_at = now
            else:
                held = host.queue.holds_task(task_id, host.name)
        except host.db_errors as exc:  # the lease has two more renewals' worth of slack
            host.problem("lease", f"cannot renew the lease of task {task_id}: "
                                  f"{type(exc).__name__}: {exc}")
            return
        host.recovered("lease")
        if not held:
            host.abort(task_id, "cancelled", f"task {task_id} is no longer in progress for "
                                             f"{host.name} (cancelled or requeued)")

    def _waits_for_a_person(self) -> bool:
        """Does a request of this agent's run wait for a person? Read only when a stall
        would be reported (a database that does not answer: no, the stall rule stands)."""
        try:
            return self.host.queue.awaits_person(self.host.name)
        except self.host.db_errors:
            return False

    def _check_stall(self, task: dict[str, Any], last_output_at: float | None,
                     now: float) -> None:
        if last_output_at is None:
            return
        stall = stall_check(last_output_at, now, self.stall_after, self.warned_for)
        if not stall.warn:
            return
        if self._waits_for_a_person():  # its CLI waits for an approval: silence, no stall
            self.host.activity.touch()  # the silence counts from the decision on
            return
        self.warned_for = last_output_at
        try:
            self.host.warn_stall(task, stall.silent_for, self.on_stall)
        except self.host.db_errors as exc:  # the warning is lost, the cancel must not be
            self.host.problem("stall warning", f"stall warning not recorded: {exc}")
        if self.on_stall == "cancel":
            self.host.abort(task["id"], "stalled",
                            f"stalled: no output for {self.stall_after:g} s")
