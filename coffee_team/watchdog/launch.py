"""The boot in priority order: a group is started once the previous group is ready.

supervisord alone would spawn every program in the same millisecond; waiting for each group to
be RUNNING costs ``startsecs`` plus a poll per group. Ready is sooner and means more: the
agent's first heartbeat, written once it holds its lock, has its queue open and has requeued
its predecessor's orphans. Each agent pokes the ready socket (heartbeat.ReadyInbox) after that
heartbeat, so the next group starts within milliseconds; the heartbeat file stays the truth
(a poke is a hint), and the files and supervisord's states are re-read every READY_RECHECK
so a lost poke, or an agent that died while starting, costs at most that long. An agent that
never gets ready holds its group back for ``start_seconds + READY_TIMEOUT`` at most, counted
from when supervisord has forked the group: then one line on stderr, a ``group_not_ready``
event, and the next group starts.

Launch is mixed into Watchdog (listener.py), which provides ``team``, ``rpc``, ``clock``,
``mono``, ``launch_only``, ``states``, ``event``, ``log`` and ``_record_start``; the rules are
policy.py's.
"""
from __future__ import annotations

import xmlrpc.client
from typing import Any, Callable

from coffee_team import events as kinds
from coffee_team.heartbeat import read_heartbeat
from coffee_team import restarts
from coffee_team.watchdog import policy

READY_RECHECK = 0.5    # seconds between re-reads of the awaited heartbeats and states
READY_TIMEOUT = 15.0   # seconds past start_seconds a group may take to get ready


class Launch:
    team: Any
    rpc: Any
    clock: Callable[[], float]
    mono: Callable[[], float]
    launch_only: tuple[str, ...]
    ready_inbox: Callable[[], Any]  # () -> a ReadyInbox (or a stand-in with wait and close)
    launched = False  # the team was launched by this process (once per supervisord boot)

    def launch_team(self) -> list[list[str]]:
        """Start agents group by group, each group once the previous one is ready.

        Given-up agents and agents waiting for a backoff restart are left to those paths.
        """
        states = self.states()
        wanted = [a for a in self.team.agents
                  if (not self.launch_only or a.name in self.launch_only)
                  and not states[a.name].given_up and states[a.name].next_restart_at is None]
        groups = restarts.launch_groups({a.name: a.priority for a in wanted})
        if not groups:
            return groups
        inbox = self.ready_inbox()  # bound before the first start, so no poke is missed
        try:
            for group in groups:
                launched = (self.clock(), self.mono())
                # the whole group spawns before the journal is written: the agents' start-up
                # overlaps those writes instead of waiting behind them
                failures = self._spawn_group(group)
                spawned = self.mono()
                for name, failure in failures.items():
                    self._record_start(name, failure, kinds.LAUNCHED)
                not_started = {name for name, failure in failures.items() if failure}
                self._wait_ready(group, launched, spawned, not_started, inbox)
        finally:
            inbox.close()
        self.launched = True
        return groups

    def _wait_ready(self, group: list[str], launched: tuple[float, float], spawned: float,
                    not_started: set[str], inbox: Any) -> None:
        """``launched``: when the group was asked for, (wall, monotonic): the wall time tells
        heartbeats of this launch from older ones, the monotonic one times the wait.
        ``spawned``: when supervisord had forked the whole group (monotonic), where the
        timeout starts: forking fifty programs on a loaded machine took up to 13 s, which
        timed a group out before its agents had had any time of their own."""
        timeout = self.team.settings.start_seconds + READY_TIMEOUT
        launched_at, launched_mono = launched
        ready: set[str] = set()
        states: dict[str, str] = {}
        recheck_at = spawned + READY_RECHECK
        while True:
            now = self.mono()
            wait = policy.group_wait(group, ready, states, not_started, spawned, now, timeout)
            if wait.done:
                break
            if now >= recheck_at:
                states = self._process_states(wait.not_ready)
                look = set(wait.not_ready)
                recheck_at = now + READY_RECHECK
            else:
                look = inbox.wait(min(wait.remaining, recheck_at - now)) & set(wait.not_ready)
            ready |= {name for name in look if policy.started_since(
                read_heartbeat(self.team.status_dir, name), launched_at)}
        priority = self.team.agent(group[0]).priority
        waited = round(self.mono() - launched_mono, 3)
        # when it was asked for and found ready, on the wall clock: a boot taken apart group
        # by group (bench/boot_groups.py) lines them up with supervisord's log and the agents'
        when = {"asked_at": round(launched_at, 3), "seen_at": round(self.clock(), 3)}
        if wait.timed_out:
            self.log(f"launch: priority {priority} not ready after {waited:g}s: "
                     f"{', '.join(wait.not_ready)}; going on without them")
            self.event(None, kinds.GROUP_NOT_READY, priority=priority,
                       not_ready=list(wait.not_ready), waited=waited, **when)
        else:
            self.event(None, kinds.GROUP_READY, priority=priority, agents=sorted(ready),
                       waited=waited, **when)

    def _spawn_group(self, group: list[str]) -> dict[str, Exception | None]:
        """startProcess(name, wait=False) for each, in one system.multicall: one trip through
        supervisord's loop per group, not one per agent. Each name's failure, or None."""
        calls = [{"methodName": "supervisor.startProcess", "params": [name, False]}
                 for name in group]
        try:
            answers = self.rpc.system.multicall(calls)
        except Exception as exc:  # no answer: none of them is known to have started
            return {name: exc for name in group}
        return {name: xmlrpc.client.Fault(answer["faultCode"], answer["faultString"])
                if isinstance(answer, dict) else None for name, answer in zip(group, answers)}

    def _process_states(self, names: tuple[str, ...]) -> dict[str, str]:
        """supervisord's state of each of ``names`` (the agents still awaited) in one round
        trip: not every program's, which at hundreds of agents, every READY_RECHECK of a boot,
        took supervisord's one thread from the spawns. A name it does not know is left out."""
        calls = [{"methodName": "supervisor.getProcessInfo", "params": [name]} for name in names]
        try:
            answers = self.rpc.system.multicall(calls)
        except Exception as exc:  # a slow supervisord: wait on with what the heartbeats say
            self.log(f"launch: process states not read: {type(exc).__name__}: {exc}")
            return {}
        return {name: answer["statename"] for name, answer in zip(names, answers)
                if isinstance(answer, dict) and "statename" in answer}
