"""``coffee-team apply``: bring a running team to its team file, moving only what changed.

The old team is the file the ``coffee`` rpcinterface loaded (``coffee.getLoadedTeam``): what
supervisord runs now, whatever was edited since. ``plan`` compares it with the new one (pure);
``Applier`` carries the plan out through supervisord's own API, as ``supervisorctl update``
does (reloadConfig, then remove/add process groups), plus what supervisor cannot know:

1. removed agents stop gracefully, their groups go, their open tasks fail with a reason;
2. the rpcinterface (``coffee.reloadTeam``) and the watchdog (SIGHUP through
   ``supervisor.signalProcess``; we wait for its ``team_reloaded`` event) take the new team,
   so an added agent is watched before it starts;
3. added agents start group by group in priority order;
4. changed agents restart one at a time in priority order (their group is replaced when the
   generated section changed, so supervisord runs the new command line).

Every other agent keeps its process and PID.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .. import client, confgen
from .. import events as kinds
from ..team import WEB_PROGRAM, Team
from .. import restarts
from ..ops.lifecycle import reset_restarts

REMOVED_REASON = "agent removed from the team"
WATCHDOG = "watchdog"
RELOAD_WAIT = 10.0  # seconds for the watchdog to confirm it reloaded the team
# The team settings an agent reads when it starts (the rest matter to the watchdog only, or
# are in the agent's generated section already).
AGENT_SETTINGS = ("database_path", "heartbeat_interval", "max_queue_size")

Rpc = Callable[..., Any]


@dataclass(frozen=True)
class Plan:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()       # restarted, in this order
    regrouped: tuple[str, ...] = ()     # changed ones whose program section changed
    unchanged: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}


def by_priority(team: Team, names) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: (team.agent(n).priority, n)))


def agent_changed(old: Team, new: Team, name: str) -> tuple[bool, bool]:
    """(restart needed, program section changed) for an agent in both teams."""
    section = confgen.agent_section(old, old.agent(name)) != \
        confgen.agent_section(new, new.agent(name))
    settings = any(getattr(old.settings, s) != getattr(new.settings, s) for s in AGENT_SETTINGS)
    return section or settings or old.agent(name) != new.agent(name), section


def plan(old: Team, new: Team) -> Plan:
    """What apply does to go from ``old`` (running) to ``new`` (the file). Pure."""
    kept = [n for n in new.names if n in old.names]
    verdicts = {n: agent_changed(old, new, n) for n in kept}
    notes = ()
    if confgen.main_config(old) != confgen.main_config(new):
        notes = ("supervisord.conf changed (listener buffer, web, http or paths): that part "
                 "takes effect at the next `coffee-team stop` and `coffee-team start` (web and "
                 "http alone: `coffee-team restart web`)",)
    return Plan(
        added=by_priority(new, (n for n in new.names if n not in old.names)),
        removed=by_priority(old, (n for n in old.names if n not in new.names)),
        changed=by_priority(new, (n for n in kept if verdicts[n][0])),
        regrouped=by_priority(new, (n for n in kept if verdicts[n][1])),
        unchanged=by_priority(new, (n for n in kept if not verdicts[n][0])),
        notes=notes)


def with_supervisor_diff(p: Plan, new: Team, diff: list[list[str]]) -> Plan:
    """Also act on what supervisord itself found different (``reloadConfig``): an earlier
    apply that stopped half-way is finished by the next one."""
    added, changed, _removed = (set(part) & set(new.names) for part in diff)
    added -= set(p.added)
    return Plan(added=by_priority(new, {*p.added, *added}), removed=p.removed,
                changed=by_priority(new, {*p.changed, *changed} - added),
                regrouped=by_priority(new, {*p.regrouped, *changed} - added),
                unchanged=tuple(n for n in p.unchanged if n not in changed | added),
                notes=p.notes)


def open_work(queue: Any, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """{agent: {pending, in_progress}} for those of ``names`` with open tasks."""
    stats = queue.stats()
    work = {}
    for name in names:
        row = stats.get(name, {})
        counts = {"pending": row.get("pending", 0), "in_progress": row.get("in_progress", 0)}
        if any(counts.values()):
            work[name] = counts
    return work


@dataclass
class Applier:
    """Carries out a plan; ``rpc(method, *args)`` calls supervisord, ``say`` reports a step."""

    team: Team
    rpc: Rpc
    queue: Any
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    failed_tasks: dict[str, int] = field(default_factory=dict)  # removed agent -> tasks failed

    def run(self, p: Plan) -> Plan:
        p = with_supervisor_diff(p, self.team, self.rpc("supervisor.reloadConfig")[0])
        for name in p.removed:
            self.remove(name)
        marker = self.queue.record_event(None, kinds.TEAM_APPLIED, added=list(p.added),
                                         removed=list(p.removed), changed=list(p.changed))
        self.reload_watchers(marker)
        reset_restarts(self.queue, (*p.added, *p.changed), restarts.on_cleared)
        for group in restarts.launch_groups({n: self.team.agent(n).priority for n in p.added}):
            for name in group:
                self.add_group(name)
            self.start(group)
        for name in p.changed:
            self.stop(name)
            if name in p.regrouped:
                self.rpc("supervisor.removeProcessGroup", name)
                self.add_group(name)
            self.start([name])
        return p

    # --- steps ---------------------------------------------------------------------------
    def state(self, name: str) -> str:
        return self.rpc("supervisor.getProcessInfo", name)["statename"]

    def stop(self, name: str) -> None:
        if self.state(name) in ("RUNNING", "STARTING", "BACKOFF"):
            self.rpc("supervisor.stopProcess", name, True)  # waits for the graceful stop

    def remove(self, name: str) -> None:
        reset_restarts(self.queue, (name,), restarts.on_stop_requested)
        if self.known(name):
            self.stop(name)
            self.rpc("supervisor.removeProcessGroup", name)
        count = self.queue.fail_open_tasks(name, REMOVED_REASON)
        self.failed_tasks[name] = count
        self.queue.record_event(name, kinds.REMOVED, failed_tasks=count)
        self.say(f"removed {name}" + (f" ({count} open task(s) failed: {REMOVED_REASON})"
                                      if count else ""))

    def known(self, name: str) -> bool:
        return any(i["name"] == name for i in self.rpc("supervisor.getAllProcessInfo"))

    def add_group(self, name: str) -> None:
        if not self.known(name):
            self.rpc("supervisor.addProcessGroup", name)

    def start(self, names: list[str]) -> None:
        for name in names:
            if self.state(name) not in ("RUNNING", "STARTING"):
                self.rpc("supervisor.startProcess", name, False)
        timeout = self.team.settings.start_seconds + 30
        states = client.wait_started(lambda: self.rpc("supervisor.getAllProcessInfo"), names,
                                     timeout, clock=self.clock, sleep=self.sleep)
        for name in names:
            self.say(f"started {name}" if states[name] == "RUNNING"
                     else f"{name} did not start ({states[name]}): see `coffee-team logs {name}`")

    def reload_web(self) -> None:
        """SIGHUP to the web program (its dashboard then shows the new agents); nothing to do
        when it does not run. Its ports and passwords change with `coffee-team restart web`.
        STARTING too: it may have read the team file before this change (it keeps the signal
        for when it serves)."""
        try:
            if self.state(WEB_PROGRAM) in ("RUNNING", "STARTING"):
                self.rpc("supervisor.signalProcess", WEB_PROGRAM, "HUP")
        except Exception:  # not a program of this supervisord, or it just stopped
            pass

    def reload_watchers(self, since_event: int) -> None:
        """The rpcinterface, the web program and the watchdog use the new team before anything
        starts."""
        self.rpc("coffee.reloadTeam")
        self.reload_web()
        try:
            self.rpc("supervisor.signalProcess", WATCHDOG, "HUP")
        except Exception as exc:  # not running: it reads the file when it starts
            self.say(f"watchdog not signalled ({exc}); it reads the team when it starts")
            return
        deadline = self.clock() + RELOAD_WAIT
        while self.clock() < deadline:
            for event in self.queue.events(since_id=since_event):
                if event["kind"] == kinds.TEAM_RELOADED:
                    return
                if event["kind"] == kinds.TEAM_RELOAD_FAILED:
                    self.say(f"watchdog kept the old team: {event['detail'].get('error')}")
                    return
            self.sleep(0.1)
        self.say(f"watchdog did not confirm the reload within {RELOAD_WAIT:g}s; "
                 f"see data/logs/watchdog.log")
