"""The watchdog's periodic health check: heartbeats (stale, hung; not while the disk is full),
CPU/RSS of each process tree, and the disk itself.

What it reads grows with the team, so it reads only what can have changed: one pass over the
process table for every tree, and an agent's heartbeat file only once its last heartbeat could
have turned stale (policy.heartbeat_next_look), and then parsed only if the file changed.

HealthChecks is mixed into Watchdog (listener.py), which provides ``team``, ``rpc``,
``queue``, ``clock``, ``mono``, ``sampler``, ``heartbeat_files``, the per-agent memories,
``state``/``save``/``event``/``log`` and work.py's checks (memory trend, wait cycles); the
rules are policy.py's pure functions.
"""
from __future__ import annotations

from typing import Any

from coffee_team import diskspace
from coffee_team import events as kinds
from coffee_team.heartbeat import last_beat
from coffee_team import restarts
from coffee_team.watchdog import policy
from coffee_team.watchdog.health import is_frozen


class HealthChecks:
    team: Any
    rpc: Any
    queue: Any
    clock: Any
    mono: Any
    sampler: Any
    heartbeat_files: Any
    heartbeat_seen: dict
    heartbeat_next_look: dict
    beats: dict
    last_step: Any
    over_limit: dict
    memory_restart: set
    uncounted: set
    disk_full_at: Any
    disk_is_full: bool
    looked_at: float | None = None  # the last look at the heartbeats (monotonic; watch_pause)

    def health_check(self) -> None:
        interval = self.team.settings.health_check_interval
        self.next_health_check = self.mono() + interval  # also when supervisord fails to answer
        infos = {i["name"]: i for i in self.rpc.supervisor.getAllProcessInfo()}
        # Ages are judged on the monotonic clock (the wall clock may step), read after the
        # call above: it waits as long as supervisord does not answer (SIGSTOP).
        now = self.mono()
        self.next_health_check = now + interval
        self.watch_pause(now)
        self._check_disk(now)
        running = []  # (spec, pid)
        for spec in self.team.agents:
            info = infos.get(spec.name)
            if not info or info["statename"] != "RUNNING":
                self.heartbeat_seen.pop(spec.name, None)
                self.heartbeat_next_look.pop(spec.name, None)
                self.beats.pop(spec.name, None)
                continue
            if restarts.is_due(self.heartbeat_next_look.get(spec.name), now,
                             self.team.settings.heartbeat_stale_after):
                if self._check_heartbeat(spec, info["pid"], info.get("start")):
                    continue  # stopped for hanging: its tree is on its way out
            running.append((spec, info["pid"]))
        usage = self.sampler.sample(pid for _, pid in running)
        pauses = self.queue.pauses() if any(s.memory_trend for s, _ in running) else {}
        for spec, pid in running:
            if pid in usage:
                self._check_resources(spec, usage[pid])
                self.check_memory_trend(spec, pid, usage[pid].rss_mb, now,
                                        infos[spec.name].get("start"), pauses)
        self.escalate()
        self.report_wait_cycles()

    def _check_disk(self, now: float) -> None:
        """A full disk stops heartbeat files: remember when it was last seen full (one line
        per episode), so heartbeats do not age meanwhile (policy.heartbeat_counted_from)."""
        full = diskspace.is_full(self.team.status_dir)
        if full != self.disk_is_full:
            self.log(f"disk full: {self.team.status_dir}; agents wait for disk, stale heartbeats "
                     f"are not hangs meanwhile" if full else
                     f"disk has space again: {self.team.status_dir}")
        if full or self.disk_is_full:  # and once more when space is back: ages count from here
            self.disk_full_at = now
        self.disk_is_full = full

    def watch_pause(self, now: float) -> None:
        """Before a heartbeat is judged at ``now`` (monotonic): was the watchdog away since
        its last look (stopped, or waiting on a supervisord that did not answer)? Such a
        pause is logged once, its silence counts for no agent (policy.unwatched, unpaused)
        and every heartbeat is read again before any is judged: nothing is restarted or
        warned of for it."""
        gap = policy.unwatched(self.looked_at, now, self.team.settings.health_check_interval)
        self.looked_at = now
        if not gap:
            return
        self.beats = {name: policy.unpaused(seen, gap, now) for name, seen in self.beats.items()}
        self.heartbeat_next_look.clear()
        self.log(f"watchdog away for {gap:.1f}s (stopped, or supervisord did not answer); "
                 f"heartbeats read again, that silence counted for no agent: nothing "
                 f"restarted or warned of for it")
        self.event(None, kinds.WATCHDOG_PAUSED, seconds=round(gap, 3))

    def _check_heartbeat(self, spec, pid: int, started_at: float | None) -> bool:
        """Warn about a stale, hung or missing heartbeat; True if the agent was stopped.
        Judged on the monotonic clock, read with the wall clock just before the file (so a
        pause between them is a pause, not an age); the heartbeat's own wall-clock stamp
        only says whether it changed since the last read (policy.observe_beat)."""
        stale_after = self.team.settings.heartbeat_stale_after
        wall, now = self.clock(), self.mono()
        self.watch_pause(now)
        beat = self.heartbeat_files.read(self.team.status_dir, spec.name)
        stamp = last_beat(beat)
        seen = self.beats[spec.name] = policy.observe_beat(
            self.beats.get(spec.name), pid, stamp, started_at or None, wall, now,
            self.last_step)
        last = None if stamp is None else seen.since
        frozen = self.disk_full_at is not None and is_frozen(pid)
        status = policy.heartbeat_status(
            policy.heartbeat_counted_from(last, self.disk_full_at, frozen), now, stale_after)
        previous = self.heartbeat_seen.get(spec.name)
        self.heartbeat_seen[spec.name] = status
        self.heartbeat_next_look[spec.name] = policy.heartbeat_next_look(last, status,
                                                                        stale_after)
        if policy.should_warn(previous, status):
            if status == policy.MISSING:
                self.queue.notify("WARNING", spec.name, f"❌ {spec.name} status file not found",
                                  f"❌ {spec.name} status file not found")
            else:
                age = now - last
                title = f"⚠️ {spec.name} heartbeat stale ({age:.0f}s old)"
                self.queue.notify("WARNING", spec.name, title, title)
            self.event(spec.name, status, age=None if last is None else round(now - last, 1))
        if status == policy.HUNG and spec.restart_on_hang:
            if beat.get("waiting_for") == "database":  # the partition's doing, not the agent's
                self.uncounted.add(spec.name)
                self.log(f"{spec.name} hung while waiting for the database; stopping it to "
                         f"restart, not counted toward give-up")
            else:
                self.uncounted.discard(spec.name)
                self.log(f"{spec.name} hung; stopping it to restart through the backoff path")
            before = self.state(spec.name)
            self.save(spec.name, restarts.on_hang(before))
            try:
                self.rpc.supervisor.stopProcess(spec.name, False)
            except Exception:
                self.save(spec.name, before)
                raise
            self.heartbeat_seen.pop(spec.name, None)
            self.heartbeat_next_look.pop(spec.name, None)
            self.beats.pop(spec.name, None)
            return True
        return False

    def _check_resources(self, spec, usage) -> None:
        warnings, streak, restart = policy.resource_findings(
            usage.cpu_percent, usage.rss_mb, cpu_threshold=spec.cpu_warn_percent,
            rss_threshold=spec.rss_warn_mb, memory_limit_mb=spec.memory_limit_mb,
            over_limit_streak=self.over_limit.get(spec.name, 0))
        self.over_limit[spec.name] = streak
        for warning in warnings:
            self.event(spec.name, warning.kind, cpu_percent=usage.cpu_percent, rss_mb=usage.rss_mb)
            self.queue.notify("WARNING", spec.name, f"⚠️ {spec.name} {warning.text}",
                              f"⚠️ {spec.name} {warning.text}")
        if restart:
            self.log(f"{spec.name} over memory_limit_mb ({usage.rss_mb:.0f}MB); restarting")
            self.event(spec.name, kinds.MEMORY_LIMIT, rss_mb=usage.rss_mb,
                       limit_mb=spec.memory_limit_mb)
            self.memory_restart.add(spec.name)
            self.rpc.supervisor.stopProcess(spec.name, False)
