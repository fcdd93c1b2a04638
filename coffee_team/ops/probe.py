"""Is the team's supervisord running, gone, or there but not answering?

A supervisord that is stopped (SIGSTOP, a debugger) or overloaded still holds its socket: a
connection is accepted and then nothing comes back. That is not "not running": booting a
second one would hang on the first one's socket, and "start the team" is the wrong advice.
``judge`` decides from three observations (the pidfile, the process it names, what the socket
did); ``observe`` makes them. Exit codes: 3 not running, 4 running but not answering.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NOT_RUNNING = 3
NOT_ANSWERING = 4

# what the process the pidfile names is
NONE, SUPERVISORD, STOPPED, OTHER = "none", "supervisord", "stopped", "other"
# what the socket did: answered, refused the connection (or no socket file), took no answer
ANSWERED, REFUSED, TIMEOUT, UNASKED = "answered", "refused", "timeout", "unasked"


@dataclass(frozen=True)
class Seen:
    """What we saw of supervisord: the pidfile's PID (None: no pidfile, or not a number), what
    that process is (NONE if gone or a zombie, OTHER if the PID went to another program,
    STOPPED for a supervisord in state T), what the socket at ``url`` did, and how long we
    waited for it."""

    pid: int | None
    process: str
    socket: str
    url: str = ""
    waited: float = 0.0
    why: str = ""  # the socket's error ("Connection refused"), when it refused


@dataclass(frozen=True)
class Verdict:
    state: str           # "running", "not_running", "not_answering"
    pid: int | None      # supervisord's PID, when there is one
    exit_code: int       # 0, NOT_RUNNING or NOT_ANSWERING
    line: str            # what to tell a person (empty when running)


def judge(seen: Seen) -> Verdict:
    """The verdict: an answer means running; a live supervisord at the pidfile's PID that did
    not answer (or a socket that took the connection and no answer) means not answering, and
    a second one must not be booted; anything else means not running."""
    alive = seen.process in (SUPERVISORD, STOPPED)
    pid = seen.pid if alive else None
    if seen.socket == ANSWERED:
        return Verdict("running", pid, 0, "")
    if alive:
        if seen.process == STOPPED:
            why = (f"stopped (process state T, e.g. SIGSTOP); `kill -CONT {pid}` resumes it, "
                   f"`coffee-team stop` after that stops the team")
        elif seen.socket == REFUSED:
            why = (f"its socket {seen.url} refuses connections ({seen.why or 'gone'}); "
                   f"`kill {pid}` ends it, then `coffee-team start`")
        else:
            why = (f"stopped or overloaded (no answer at {seen.url} within {seen.waited:g}s); "
                   f"wait and retry, `kill -CONT {pid}` if it was stopped, `kill {pid}` ends it")
        return Verdict("not_answering", pid, NOT_ANSWERING,
                       f"supervisord PID {pid} does not answer: {why}")
    if seen.socket == TIMEOUT:  # a server at another URL, or one whose pidfile is gone
        return Verdict("not_answering", None, NOT_ANSWERING,
                       f"supervisord at {seen.url} does not answer: stopped or overloaded (no "
                       f"answer within {seen.waited:g}s); wait and retry")
    reason = f": {seen.why}" if seen.why else ""
    return Verdict("not_running", None, NOT_RUNNING,
                   f"supervisord is not running (no answer at {seen.url}{reason}); start the "
                   f"team with `coffee-team start`")


# --- observing ------------------------------------------------------------------------------

def pidfile(team) -> Path:
    return team.run_dir / "supervisord.pid"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def process_kind(pid: int | None) -> str:
    """What runs at ``pid``: SUPERVISORD, STOPPED (a supervisord in state T), OTHER or NONE."""
    if pid is None or pid <= 0:
        return NONE
    import psutil
    try:
        proc = psutil.Process(pid)
        status = proc.status()
        if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return NONE
        if "supervisord" not in " ".join(proc.cmdline()):
            return OTHER  # the PID went to another program: the pidfile is stale
        return STOPPED if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP) \
            else SUPERVISORD
    except psutil.NoSuchProcess:
        return NONE
    except psutil.AccessDenied:  # another user's: it is there, we cannot tell more
        return SUPERVISORD


def stopped_supervisord(pid: int | None) -> bool:
    """Is ``pid`` a supervisord in process state T? Read from /proc (no psutil: the command
    line asks this before its first call, and `status` does not load psutil otherwise);
    False where there is no /proc."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    return state in (["T"], ["t"]) and b"supervisord" in cmdline


def own_pid(team, endpoint) -> int | None:
    """The pidfile's PID, if ``endpoint`` is the team's own socket (an endpoint from
    SUPERVISOR_SERVER_URL or --conf may be another server: its pidfile is not ours to read)."""
    if endpoint.url != "unix://" + str(team.run_dir / "supervisor.sock"):
        return None
    return read_pid(pidfile(team))


def observe(team, endpoint, timeout: float, ask=None) -> Seen:
    """Look: the pidfile, its process, then (unless that process is stopped: no use asking)
    ``supervisor.getState`` with ``timeout``. ``ask`` replaces the call (tests)."""
    import time

    from .. import client
    from ..errors import SupervisorDown, SupervisorNotAnswering
    pid = own_pid(team, endpoint)
    kind = process_kind(pid)
    if kind == STOPPED:
        return Seen(pid, kind, UNASKED, endpoint.url)
    ask = ask or (lambda: client.call(endpoint, "supervisor.getState", timeout=timeout))
    started = time.monotonic()
    try:
        answered = ask()
    except SupervisorNotAnswering:
        return Seen(pid, kind, TIMEOUT, endpoint.url, time.monotonic() - started)
    except SupervisorDown as exc:
        return Seen(pid, kind, REFUSED, endpoint.url, why=_reason(str(exc)) or str(exc))
    except Exception:  # a fault (shutting down): it answered
        pass
    else:
        if answered is False:  # client.is_running: gone, or shut down while we waited
            return Seen(pid, kind, REFUSED, endpoint.url)
    return Seen(pid, kind, ANSWERED, endpoint.url)


def settled(team, endpoint, timeout: float, ask=None) -> Seen:
    """``observe``, again for up to ``timeout`` while the pidfile's supervisord lives but its
    socket refuses: one that is exiting (after a shutdown) is gone in a moment."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        seen = observe(team, endpoint, timeout, ask)
        if seen.socket != REFUSED or seen.process != SUPERVISORD or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def after_failure(team, endpoint, exc, waited: float) -> Verdict:
    """The verdict once a call failed with ``exc`` (SupervisorDown or SupervisorNotAnswering),
    without asking the socket again. A failure that is not about the connection (a wrong
    password) keeps its own message."""
    from ..errors import SupervisorNotAnswering
    pid = own_pid(team, endpoint)
    if isinstance(exc, SupervisorNotAnswering):
        return judge(Seen(pid, process_kind(pid), TIMEOUT, endpoint.url, waited))
    reason = _reason(str(exc))
    if reason is None:
        return Verdict("not_running", None, NOT_RUNNING,
                       f"{exc}; start the team with `coffee-team start`")
    return judge(Seen(pid, process_kind(pid), REFUSED, endpoint.url, waited, reason))


def _reason(message: str) -> str | None:
    """"Connection refused" out of client.call's "supervisord is not running (no answer at
    URL: Connection refused)"; None for a message of another form."""
    head, sep, tail = message.partition(": ")
    if head.startswith("supervisord is not running (no answer at") and sep:
        return tail.removesuffix(")")
    return None
