"""The watchdog program: ``python -m coffee_team.watchdog`` (``[eventlistener:watchdog]``).

Opens the team file and the database (patiently, startup.py), then runs the listener's
protocol loop (listener.py) on this thread and two threads beside it, each with a database
connection of its own so none ever shares a transaction with the loop: notification
deliveries (coffee_team.notify) and the merge queue's merger (coffee_team.merge.merger).
"""
from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys

from coffee_team.watchdog.clocksteps import wall_clock
from coffee_team.watchdog.listener import Watchdog
from coffee_team.watchdog.protocol import ListenerProtocol


def main(argv: list[str] | None = None) -> int:
    from supervisor import childutils

    from coffee_team.merge.merger import Merger
    from coffee_team.notify import Deliverer
    from coffee_team.queue import MessageQueue
    # the compiled team while it is fresh (gen-config, apply and start write it), else the YAML
    from coffee_team.team.snapshot import load_team
    from coffee_team.watchdog.dbworker import PatientQueue
    from coffee_team.watchdog.startup import open_patiently

    parser = argparse.ArgumentParser(prog="watchdog")
    parser.add_argument("--team", default="data/team.yaml")
    args = parser.parse_args(argv)
    protocol = ListenerProtocol.for_supervisor()
    # supervisord stops us with SIGTERM at shutdown: exit quietly, not "terminated by SIGTERM".
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    def open_all():
        team = load_team(args.team)
        # the team's first process: makes the database where none ever was (queue/files.py)
        return team, MessageQueue.from_team(team, create=True)

    opened = open_patiently(open_all, protocol)
    if opened is None:
        return 0
    team, queue = opened.value
    if opened.waited:
        protocol.log("started: the team file and the database open now")
    launch_only = tuple(n for n in os.environ.get("COFFEE_LAUNCH_AGENTS", "").split(",") if n)
    rpc = childutils.getRPCInterface(os.environ)
    clock = wall_clock(os.environ.get("COFFEE_TEST_CLOCK_OFFSET_FILE"))
    with queue, MessageQueue.from_team(team, create=False) as delivery_queue, \
            MessageQueue.from_team(team, create=False) as merge_queue:
        # Opening them connected this thread (connections are per thread); only their
        # threads use them, so these connections would be left behind on a replaced file.
        delivery_queue.backend.close()
        merge_queue.backend.close()
        # The loop's calls run on a thread of their own, on a connection of their own, and
        # never keep it waiting on the database (dbworker.py).
        queue.backend.close()
        patient = PatientQueue(queue, protocol.log)
        watchdog = Watchdog(team, protocol, rpc, patient, clock=clock, launch_only=launch_only,
                            load_team=lambda: load_team(args.team))
        signal.signal(signal.SIGHUP, watchdog.request_reload)
        # their own connections: a thread never shares a transaction with the event loop
        Deliverer(delivery_queue, lambda: watchdog.team.settings.notify, protocol.log).start()
        merger = Merger(merge_queue, lambda: watchdog.team, protocol.log, team.state_host)
        merger.start()
        atexit.register(merger.stop)  # a check under way ends with the watchdog
        boot = opened.supervisor_running or supervisord_booting(rpc, team, protocol)
        return watchdog.run(launch=boot, already_ready=opened.waited)


def supervisord_booting(rpc, team, protocol) -> bool:
    """policy.is_boot, asked of supervisord: launch now rather than a second later, when its
    RUNNING event reaches this listener. No answer: wait for the event, as before."""
    from coffee_team.watchdog.policy import is_boot
    try:
        boot = is_boot(rpc.supervisor.getState()["statename"],
                       rpc.supervisor.getAllProcessInfo(), set(team.names))
    except Exception as exc:  # a slow or busy supervisord: its RUNNING event still comes
        protocol.log(f"boot not detected ({type(exc).__name__}: {exc}); waiting for "
                     f"supervisord's RUNNING event")
        return False
    if boot:
        protocol.log("supervisord is booting (RUNNING, no agent started yet): launching now")
    return boot
