"""The heartbeat of an agent that is starting and waits for the database (issue 26).

Until it holds its lock, has its queue open and has requeued its predecessor's orphans, an
agent writes no heartbeat of its own: its first one says it is ready (the boot's stagger and
``agent probe --started`` wait for it: ``started_at``). An instance started while the database
does not answer (restarted during a partition) would then stay silent and be found hung by its
predecessor's heartbeat. So while it starts, a thread beats for it once it has waited
DB_WAIT_SHOWN: state "starting", waiting for the database since its start, and no
``started_at``: alive, not ready. A start that does not wait writes nothing here.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from ..heartbeat import write_heartbeat
from ..liveness import DB_WAIT_SHOWN, STARTING


def starting_beat(name: str, pid: int, since: float, now: float) -> dict[str, Any]:
    """The heartbeat file of an instance waiting for the database before it is ready."""
    return {"agent": name, "pid": pid, "state": STARTING, "current_task": None,
            "last_heartbeat": now, "trouble": ["database"], "waiting_for": "database",
            "waiting_since": since}


class StartupBeat:
    """``with StartupBeat(team, name):`` around what a start waits for."""

    def __init__(self, team: Any, name: str, clock: Callable[[], float] = time.time):
        self.status_dir = team.status_dir
        self.interval = min(team.settings.heartbeat_interval, DB_WAIT_SHOWN * 5)
        self.name = name
        self.clock = clock
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-startbeat",
                                        daemon=True)

    def __enter__(self) -> "StartupBeat":
        self.since = self.clock()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        wait = DB_WAIT_SHOWN
        while not self._done.wait(wait):
            try:
                write_heartbeat(self.status_dir, self.name,
                                starting_beat(self.name, os.getpid(), self.since, self.clock()))
            except OSError:  # an unusable status dir: the agent says so once it runs
                pass
            wait = self.interval
