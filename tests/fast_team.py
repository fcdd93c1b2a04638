"""A throwaway project for the in-process tests (nothing is started): a team file with the
fast timings of ``conftest.FAST_TEAM``, its data directories, and a clock that moves only
when told to.  The queue is always a real MessageQueue on the project's SQLite file."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, Iterator

import yaml

from coffee_team.team import Team, load_team
from tests.clock import FakeClock
from tests.harness import FAST_TEAM


def real_time_clock() -> FakeClock:
    """The one FakeClock, started at the real time (a whole second, as supervisor reports
    process start times) so psutil figures such as process start times stay plausible."""
    return FakeClock(float(int(time.time())))


@contextlib.contextmanager
def temp_root() -> Iterator[Path]:
    """A short project root under /tmp: wake sockets live in it (unix paths max 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="ctf-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_team(root: Path, agents: dict[str, dict], *, database: bool = True,
               **team_overrides: Any) -> Team:
    """``root/data/team.yaml`` plus the directories the agents and the interface write to
    (what ``layout.ensure_data_dirs`` creates) and, with ``database``, the SQLite database
    (what ``start`` or the watchdog makes: nothing else does); returns the loaded Team."""
    team_file = root / "data" / "team.yaml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    document = {"team": {**FAST_TEAM, **team_overrides}, "agents": agents}
    team_file.write_text(yaml.safe_dump(document, sort_keys=False))
    team = load_team(team_file)
    for directory in (team.data_dir, team.run_dir, team.log_dir, team.status_dir,
                      Path(team.wake_dir)):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if database and not team.is_postgres and not Path(team.database_url).exists():
        from coffee_team.queue import MessageQueue
        MessageQueue.from_team(team).close()
    return team


def assert_xmlrpc_safe(value: Any) -> None:
    """Marshal ``value`` the way supervisord answers (no allow_none) and parse it back.

    dumps() refuses None and ints beyond 32 bits; loads() (expat) refuses XML-illegal
    control characters, which dumps() would happily write.
    """
    body = xmlrpc.client.dumps((value,), methodresponse=True)
    xmlrpc.client.loads(body)
