"""Talking to a running supervisord over its XML-RPC API, and booting one."""
from __future__ import annotations

import os
import socket
import sys
import time
import base64
import http.client
import xmlrpc.client
from dataclasses import dataclass
from typing import Callable, Iterable
from pathlib import Path

from .errors import SupervisorDown, SupervisorNotAnswering
from .team import Team


class Faults:
    """The codes of supervisor.xmlrpc.Faults the CLI decides on (importing supervisor's module
    costs the CLI ~50 ms; tests check these match)."""

    UNKNOWN_METHOD = 1
    BAD_ARGUMENTS = 3
    SHUTDOWN_STATE = 6
    BAD_NAME = 10
    NO_FILE = 20
    FAILED = 30


@dataclass(frozen=True)
class Endpoint:
    url: str
    username: str | None = None
    password: str | None = None

    def proxy(self, timeout: float | None = None) -> xmlrpc.client.ServerProxy:
        transport = _Transport(self, timeout)
        if self.url.startswith("unix://"):
            return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=transport)
        return xmlrpc.client.ServerProxy(self.url.rstrip("/") + "/RPC2", transport=transport)


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (supervisord's own); the web program forwards /RPC2 with it."""

    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class _Transport(xmlrpc.client.Transport):
    """HTTP or a unix socket, with basic auth; a few lines instead of importing supervisor's
    client stack, which roughly halves ``coffee-team status`` start-up time."""

    def __init__(self, endpoint: Endpoint, timeout: float | None):
        super().__init__()
        self.endpoint = endpoint
        self.timeout = timeout

    def make_connection(self, host):
        if self.endpoint.url.startswith("unix://"):
            return UnixConnection(self.endpoint.url[len("unix://"):], self.timeout)
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn

    def send_headers(self, connection, headers):
        if self.endpoint.username is not None:
            token = f"{self.endpoint.username}:{self.endpoint.password or ''}".encode()
            headers = [*headers, ("Authorization", "Basic " + base64.b64encode(token).decode())]
        super().send_headers(connection, headers)


def endpoint_for(team: Team, conf: str | None = None) -> Endpoint:
    """Where to reach supervisord: ``SUPERVISOR_SERVER_URL``, then ``--conf``, then the team's
    own socket (so it works from any working directory)."""
    url = os.environ.get("SUPERVISOR_SERVER_URL")
    if url:
        return Endpoint(url, os.environ.get("SUPERVISOR_USERNAME"),
                        os.environ.get("SUPERVISOR_PASSWORD"))
    if conf:
        return _endpoint_from_conf(conf)
    return Endpoint("unix://" + str(team.run_dir / "supervisor.sock"))


def _endpoint_from_conf(conf: str) -> Endpoint:
    from supervisor.options import ClientOptions
    options = ClientOptions()
    options.stderr = open(os.devnull, "w")
    try:
        options.realize(args=["-c", conf], doc="")
    except SystemExit:
        raise SupervisorDown(f"{conf}: cannot read the [supervisorctl] section") from None
    return Endpoint(options.serverurl, options.username, options.password)


def call(endpoint: Endpoint, method: str, *args, timeout: float | None = 30.0):
    """One RPC call; connection failures become ``SupervisorDown``."""
    target = endpoint.proxy(timeout)
    for part in method.split("."):
        target = getattr(target, part)
    try:
        return target(*args)
    except socket.timeout:  # connected (or connecting) but no answer: not the same as gone
        raise SupervisorNotAnswering(f"supervisord does not answer at {endpoint.url} within "
                                     f"{timeout or 0:g}s", timeout or 0.0) from None
    except (OSError, socket.error) as exc:
        raise SupervisorDown(f"supervisord is not running (no answer at {endpoint.url}: "
                             f"{exc.strerror or exc})") from None
    except xmlrpc.client.ProtocolError as exc:
        if exc.errcode == 401:
            raise SupervisorDown(f"{endpoint.url}: wrong username or password") from None
        if exc.errcode == 502:  # the web program answered for a supervisord that does not
            raise SupervisorDown(f"supervisord is not running (the web program at "
                                 f"{endpoint.url} cannot reach its socket)") from None
        raise


def is_running(endpoint: Endpoint, shutdown_wait: float = 30.0, clock=time.monotonic,
               timeout: float = 5.0) -> bool:
    """True if supervisord answers; one that is shutting down is waited for, then False. One
    that accepts the connection but does not answer within ``timeout`` is neither:
    ``SupervisorNotAnswering`` (the caller must not boot a second one)."""
    deadline = clock() + shutdown_wait
    while True:
        try:
            return call(endpoint, "supervisor.getState", timeout=timeout)["statename"] == "RUNNING"
        except SupervisorNotAnswering:
            raise
        except SupervisorDown:
            return False
        except xmlrpc.client.Fault as exc:
            if exc.faultCode != Faults.SHUTDOWN_STATE or clock() > deadline:
                raise SupervisorDown(f"supervisord at {endpoint.url}: {exc.faultString}") from None
            time.sleep(0.1)


# A start is over when the program runs or has failed; STOPPED means "not started yet" (at
# boot the watchdog launches agents group by group after supervisord is up).
START_FAILED = ("FATAL", "EXITED", "UNKNOWN")
# The watchdog and the web program start themselves and are retried at once when they exit:
# BACKOFF already means an exit within their first second, which a retry does not mend.
HELPER_FAILED = ("BACKOFF", "FATAL", "UNKNOWN")


# supervisord's spawnerr after an exit within startsecs: the program ran, its log says why
EXITED_TOO_QUICKLY = "Exited too quickly"
BAD_EXIT_CODE = "Bad exit code"  # ... and after an unexpected exit past startsecs


def spawn_error(info: dict) -> str:
    """Why supervisord could not run the program's command at all (e.g. "can't find command
    '/x/bin/python'"), or ''."""
    error = info.get("spawnerr") or ""
    return "" if error.startswith(EXITED_TOO_QUICKLY) else error


def start_failures(infos: dict[str, dict], names: Iterable[str],
                   helpers: Iterable[str] = (), booted: bool = False) -> list[str]:
    """The programs among ``names`` (agents) and ``helpers`` whose start failed or cannot
    succeed: a failed state, or a spawn error (its retries are bound to fail the same way).
    ``booted``: supervisord was started for this start, so a helper that exited at all (its
    last stop time is set) failed, also after its first second: on a loaded machine its
    start-up outlasts startsecs, and supervisord calls it RUNNING, then respawns it at once
    each time it exits, never BACKOFF."""
    failed = [n for n in names if infos.get(n, {}).get("statename", "UNKNOWN") in START_FAILED
              or spawn_error(infos.get(n, {}))]
    return failed + [h for h in helpers if h in infos and (
        infos[h]["statename"] in HELPER_FAILED or spawn_error(infos[h])
        or (booted and bool(infos[h].get("stop"))))]


def wait_start(process_infos: Callable[[], Iterable[dict]], names: Iterable[str],
               timeout: float, *, helpers: Iterable[str] = (), first_failure: bool = True,
               booted: bool = False, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep,
               interval: float = 0.1) -> dict[str, dict]:
    """Poll ``process_infos`` (supervisor.getAllProcessInfo) until every one of ``names`` and
    ``helpers`` runs or failed (``start_failures``, ``booted`` as there; with
    ``first_failure``, until the first fails), or ``timeout`` passed with none of them coming
    up; return the last info of each name (statename UNKNOWN: not a program) and of each
    helper supervisord has. The caller decides what a failure or a timeout means to it.

    The timeout counts from the last program seen RUNNING, not from the call: a team of 500
    takes minutes on a small machine, and only a start that stopped moving is stuck."""
    names, helpers = tuple(names), tuple(helpers)
    deadline, running = clock() + timeout, 0
    while True:
        by_name = {info["name"]: info for info in process_infos()}
        infos = {name: by_name.get(name, {"name": name, "statename": "UNKNOWN"})
                 for name in names}
        infos.update((h, by_name[h]) for h in helpers if h in by_name)
        failed = start_failures(infos, names, helpers, booted)
        settled = all(i["statename"] == "RUNNING" or n in failed for n, i in infos.items())
        now_running = sum(i["statename"] == "RUNNING" for i in infos.values())
        if now_running > running:
            deadline, running = clock() + timeout, now_running
        if settled or (failed and first_failure) or clock() >= deadline:
            return infos
        sleep(interval)


def wait_started(process_infos: Callable[[], Iterable[dict]], names: Iterable[str],
                 timeout: float, **kwargs) -> dict[str, str]:
    """``wait_start`` for agents alone, until each has run or failed: its last state."""
    names = tuple(names)
    infos = wait_start(process_infos, names, timeout, first_failure=False, **kwargs)
    return {name: infos[name]["statename"] for name in names}


def supervisord_binary() -> str:
    import shutil  # here, not at the top: `coffee-team status` starts faster without it
    beside = Path(sys.executable).parent / "supervisord"
    if beside.exists():
        return str(beside)
    found = shutil.which("supervisord")
    if not found:
        raise SupervisorDown("supervisord not found; install the project (pip install -e .)")
    return found


def startup_error(output: str, returncode: int) -> str:
    """The line of supervisord's output that says why it did not start (not its closing "For
    help, use ..." line), without the list of every environment variable it may append."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reason = next((line for line in lines if line.startswith("Error:")), None) or \
        next((line for line in lines if not line.startswith("For help")), None)
    if reason is None:
        return f"exit status {returncode}"
    return reason.removeprefix("Error: ").split(" Available names:")[0]


def boot(team: Team, endpoint: Endpoint, launch: tuple[str, ...] = (),
         timeout: float = 20.0, clock=time.monotonic) -> None:
    """Start supervisord on the generated config (it daemonizes) and wait until it answers.

    ``launch`` limits which agents the watchdog launches at boot (empty = all).
    """
    import subprocess  # here, not at the top: `coffee-team status` starts faster without it
    env = dict(os.environ)
    env.pop("SUPERVISOR_SERVER_URL", None)
    if launch:
        env["COFFEE_LAUNCH_AGENTS"] = ",".join(launch)
    else:
        env.pop("COFFEE_LAUNCH_AGENTS", None)
    # its own session: a Ctrl+C in the terminal is ours to handle, not a signal to a
    # supervisord half way through daemonizing
    proc = subprocess.Popen([supervisord_binary(), "-c", str(team.conf_file)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # e.g. stuck on a socket a stopped supervisord holds
        proc.kill()
        proc.communicate()
        raise SupervisorDown(f"supervisord did not start within {timeout:g}s (is another one "
                             f"holding {endpoint.url}?); see "
                             f"{team.log_dir / 'supervisord.log'}") from None
    except KeyboardInterrupt:
        proc.communicate(timeout=30)  # it daemonizes in moments: let it, so the pidfile
        raise                         # names what the interrupt leaves running
    if proc.returncode != 0:
        raise SupervisorDown(f"supervisord failed to start: "
                             f"{startup_error(err + out, proc.returncode)}")
    deadline = clock() + timeout
    while clock() < deadline:
        try:
            if is_running(endpoint, timeout=max(0.5, min(5.0, deadline - clock()))):
                return
        except SupervisorNotAnswering:
            pass  # busy spawning its programs: it answers once its loop runs
        time.sleep(0.1)
    raise SupervisorDown(f"supervisord did not answer within {timeout:g}s; "
                         f"see {team.log_dir / 'supervisord.log'}")
