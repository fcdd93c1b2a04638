"""The watchdog event listener: ``[eventlistener:watchdog]`` in the generated config.

It launches the team in priority order when supervisord reaches RUNNING (supervisor alone would
spawn every program in the same millisecond). stdin/stdout/the RPC proxy are injected, so tests
drive it with StringIO and a fake RPC; it logs to stderr only, because stdout is the protocol.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, Callable

from eventlisteners import policy
from eventlisteners.protocol import Event, ListenerProtocol, MalformedEvent

LAUNCH_POLL = 0.05  # seconds between state checks while a priority group starts


class Watchdog:
    def __init__(self, team, protocol: ListenerProtocol, rpc: Any,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 launch_only: tuple[str, ...] = ()):
        self.team = team
        self.protocol = protocol
        self.rpc = rpc
        self.clock = clock
        self.sleep = sleep
        self.launch_only = launch_only

    def log(self, message: str) -> None:
        self.protocol.log(message)

    # --- launch ----------------------------------------------------------------------------
    def launch_team(self) -> list[list[str]]:
        """Start agents group by group: a group starts once the previous one is RUNNING."""
        wanted = [a for a in self.team.agents if not self.launch_only or a.name in self.launch_only]
        groups = policy.launch_groups({a.name: a.priority for a in wanted})
        for group in groups:
            for name in group:
                self._start(name)
            self._wait_running(group)
        return groups

    def _start(self, name: str) -> None:
        try:
            self.rpc.supervisor.startProcess(name, False)
            self.log(f"launch {name}")
        except Exception as exc:  # ALREADY_STARTED, BAD_NAME…: log and carry on with the team
            self.log(f"launch {name} failed: {exc}")

    def _wait_running(self, group: list[str]) -> None:
        deadline = self.clock() + self.team.settings.start_seconds + 15
        pending = set(group)
        while pending and self.clock() < deadline:
            for name in sorted(pending):
                state = self.rpc.supervisor.getProcessInfo(name)["statename"]
                if state in ("RUNNING", "FATAL", "EXITED", "STOPPED"):
                    pending.discard(name)
            if pending:
                self.sleep(LAUNCH_POLL)
        if pending:
            self.log(f"launch: still not RUNNING after the start window: {', '.join(sorted(pending))}")

    # --- events ----------------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if event.eventname == "SUPERVISOR_STATE_CHANGE_RUNNING":
            self.launch_team()

    def run(self) -> int:
        while True:
            self.protocol.ready()
            try:
                event = self.protocol.read_event(timeout=None)
            except EOFError:
                self.log("stdin closed (supervisord is shutting down); exiting")
                return 0
            except MalformedEvent as exc:
                self.log(f"malformed event ignored: {exc}")
                self.protocol.fail()
                continue
            if event is None:
                continue
            try:
                self.handle(event)
            except Exception as exc:  # one bad event must not take the watchdog down
                self.log(f"error handling {event.eventname}: {type(exc).__name__}: {exc}")
            self.protocol.ok()


def main(argv: list[str] | None = None) -> int:
    from supervisor import childutils

    from coffee_team.team import TeamError, load_team

    parser = argparse.ArgumentParser(prog="watchdog")
    parser.add_argument("--team", default="data/team.yaml")
    args = parser.parse_args(argv)
    protocol = ListenerProtocol.for_supervisor()
    try:
        team = load_team(args.team)
    except TeamError as exc:
        protocol.log(f"cannot start: {exc}")
        return 2
    # supervisord stops us with SIGTERM at shutdown: exit quietly, not "terminated by SIGTERM".
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    launch_only = tuple(n for n in os.environ.get("COFFEE_LAUNCH_AGENTS", "").split(",") if n)
    rpc = childutils.getRPCInterface(os.environ)
    return Watchdog(team, protocol, rpc, launch_only=launch_only).run()


if __name__ == "__main__":
    sys.exit(main())
