"""Notifications that reach a person: ``team.notify`` targets, their senders and the deliverer.

A target is an Apprise URL (``url:``; Slack, Discord, Telegram, ntfy, e-mail, JSON webhooks…,
with the optional extra ``pip install -e '.[notify]'``) or an argv (``command:``) that reads
the notification as JSON on stdin and exits 0 when it delivered it.

Where delivery runs: a daemon thread of the watchdog process (``Deliverer.start``), not the
listener's event loop and not a program of its own. The loop must answer supervisord's
events at once, and one webhook can take seconds to time out, so sending never happens on
it; a separate program would cost another ~25 MB process, a section in the generated config
and its own lifecycle, for a job that is idle almost always. The thread owns its own database
connection and its state is in the database (``deliveries``), so when the watchdog dies,
supervisord restarts it and the new thread carries on where the old one stopped.
"""
from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import retry
from .errors import TeamError
from .team import NotifyTarget, Team

FIRST_RETRY = 2.0        # seconds before the first retry of a failed delivery
MAX_RETRY = 900.0        # cap on the pause between two tries of one delivery
POLL_INTERVAL = 1.0      # how often the deliverer looks for new notifications
COMMAND_TIMEOUT = 30.0   # a command target that takes longer has failed
# Apprise URLs that take a "be quiet" switch get it (CFR-009: notifications are silent).
SILENT_PARAMS = {"tgram": "silent=yes", "pover": "sound=none"}


@dataclass(frozen=True)
class Result:
    ok: bool
    error: str = ""


def retry_delay(attempt: int, first: float = FIRST_RETRY, cap: float = MAX_RETRY) -> float:
    """Pause after failed attempt number ``attempt`` (1-based): first, 2×first, … cap."""
    return retry.delay(max(attempt, 1), first, cap)


def payload(notification: dict[str, Any]) -> dict[str, Any]:
    """What a command target reads on stdin (``sound`` is always false: CFR-009)."""
    return {"id": notification.get("notification_id", notification.get("id")),
            "created_at": notification.get("created_at"), "level": notification["level"],
            "agent": notification.get("agent"), "title": notification["title"],
            "message": notification["message"], "sound": False}


def silenced(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    switch = SILENT_PARAMS.get(scheme)
    if switch is None or switch.split("=")[0] + "=" in url:
        return url
    return url + ("&" if "?" in url else "?") + switch


# --- senders ---------------------------------------------------------------------------------

def send_command(argv: tuple[str, ...], notification: dict[str, Any],
                 timeout: float = COMMAND_TIMEOUT) -> Result:
    try:
        done = subprocess.run(list(argv), input=json.dumps(payload(notification)), text=True,
                              capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Result(False, f"{argv[0]}: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        return Result(False, f"{argv[0]} exited {done.returncode}" + (f": {last}" if last else ""))
    return Result(True)


def _apprise():
    from .extras import missing
    lacking = missing("notify", "team.notify: url targets")
    if lacking:
        raise TeamError(lacking)
    import apprise
    return apprise


APPRISE_TYPES = {"INFO": "info", "WARNING": "warning", "CRITICAL": "failure"}


def send_url(url: str, notification: dict[str, Any]) -> Result:
    apprise = _apprise()
    sender = apprise.Apprise()
    if not sender.add(silenced(url)):
        return Result(False, f"{url.split('://')[0]}://: not a URL Apprise can use")
    # Apprise reports why a send failed only through logging: capture it for the error column.
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = sender.notify(body=notification["message"], title=notification["title"],
                           notify_type=APPRISE_TYPES.get(notification["level"], "info"))
        text = captured.getvalue().strip().splitlines()
    return Result(True) if ok else Result(False, (text or ["Apprise reported a failure"])[-1])


def send(target: NotifyTarget, notification: dict[str, Any]) -> Result:
    """Deliver one notification to one target; never raises."""
    try:
        if target.command is not None:
            return send_command(target.command, notification)
        return send_url(target.url or "", notification)
    except Exception as exc:  # a broken plugin or environment is this target's failure only
        return Result(False, f"{type(exc).__name__}: {exc}")


def check_targets(team: Team) -> None:
    """TeamError (one line) for a url target Apprise cannot use; needs Apprise only if the
    team has url targets. Called by gen-config, apply and doctor, not on every team load."""
    urls = [(i, t) for i, t in enumerate(team.settings.notify) if t.url is not None]
    if not urls:
        return
    apprise = _apprise()
    for i, target in urls:
        if apprise.Apprise.instantiate(target.url, suppress_exceptions=True) is None:
            scheme = target.url.split("://")[0]
            raise TeamError(f"{team.path}: team.notify[{i}].url: Apprise does not know the "
                            f"scheme {scheme!r} or cannot parse the URL (see "
                            f"https://github.com/caronc/apprise/wiki)")


# --- the deliverer ---------------------------------------------------------------------------

@dataclass
class Deliverer:
    """Plans and sends deliveries; ``pass_once`` is one round, ``start`` runs rounds forever
    on a daemon thread. ``targets`` is read each round, so a reloaded team applies at once."""

    queue: Any
    targets: Callable[[], tuple[NotifyTarget, ...]]
    log: Callable[[str], None]
    clock: Callable[[], float] = time.time
    sender: Callable[[NotifyTarget, dict], Result] = send
    first_retry: float = FIRST_RETRY
    _planned: tuple[int, tuple[str, ...]] | None = None  # (last id, target keys) planned for
    _stop: threading.Event = field(default_factory=threading.Event)

    def pass_once(self) -> int:
        """Plan new rows and try every due one; returns how many were delivered."""
        targets = {t.key: t for t in self.targets()}
        if not targets:
            return 0
        self.plan(targets)
        delivered = 0
        for row in self.queue.due_deliveries(self.clock()):
            target = targets.get(row["target"])
            if target is not None and self.attempt(target, row):
                delivered += 1
        return delivered

    def plan(self, targets: dict[str, NotifyTarget]) -> None:
        # One read per round; the write transaction only when a notification or a target is new.
        seen = (self.queue.last_notification_id(), tuple(sorted(targets)))
        if seen != self._planned:
            self.queue.plan_deliveries((k, t.label, t.level) for k, t in targets.items())
            self._planned = seen

    def attempt(self, target: NotifyTarget, row: dict) -> bool:
        now = self.clock()
        retry_at = now + retry_delay(row["attempts"] + 1, self.first_retry)
        if not self.queue.begin_delivery(row["id"], now, retry_at):
            return False  # another deliverer has it
        result = self.sender(target, row)
        if result.ok:
            self.queue.delivered(row["id"])
            return True
        self.queue.delivery_failed(row["id"], result.error)
        self.log(f"notification {row['notification_id']} to {target.label} failed "
                 f"(attempt {row['attempts'] + 1}, next in {retry_at - now:.0f}s): {result.error}")
        return False

    def round(self) -> None:
        """One round of ``run``. No target: not even a look at the database file (the
        watchdog's idle CPU: most teams have none)."""
        if self.targets() and self.queue.check_file() is None:  # else the watchdog says why
            self.pass_once()

    def run(self, interval: float = POLL_INTERVAL) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception as exc:  # the database may be busy or gone: try again later
                self.log(f"notification delivery: {type(exc).__name__}: {exc}")
            self._stop.wait(interval)

    def start(self, interval: float = POLL_INTERVAL) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(interval,), name="notify", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def send_test(team: Team, clock: Callable[[], float] = time.time) -> list[tuple[NotifyTarget, Result]]:
    """One test notification to every target now (``coffee-team notifications test``)."""
    notification = {"id": 0, "created_at": clock(), "level": "INFO", "agent": None,
                    "title": "coffee-team test notification",
                    "message": f"A test from coffee-team ({team.root}): this target works."}
    return [(target, send(target, notification)) for target in team.settings.notify]
