"""The web program's dashboard: one page, its JSON, the actions, an agent's log and ``/metrics``.

Standard library ``http.server`` (threaded, with ``httpd``'s deadlines and connection cap):
the program serves one page, a few JSON routes and a text endpoint to a handful of people and
one Prometheus, so a framework would add a dependency and start-up time without adding
anything the page needs.

Security: every path needs HTTP basic auth (the team's ``web.username`` and the password from
``web.password_env``); actions are POST only and, like reading an agent's log, need both the
page's CSRF token (in a header a cross-site form cannot set, and that another origin cannot
read from the page) and, when the browser sends one, an ``Origin`` equal to this server's own.
"""
from __future__ import annotations

import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import client, promexport
from ..errors import TaskNotFound
from ..taskstate import STATES
from . import actions
from .httpd import HEAD_TIMEOUT, GuardedHandler, GuardedServer, basic_auth_ok
from .snapshot import Snapshots

PAGE = Path(__file__).with_name("page.html")
CSRF_HEADER = "X-Coffee-CSRF"
ACTION_PATH = re.compile(
    r"^/api/(agents|tasks|notifications|approvals)/([^/]{1,100})/([a-z]+)$")
TASK_PATH = re.compile(r"^/api/tasks/([^/]{1,100})$")
AGENT_PATH = re.compile(r"^/api/agents/([^/]{1,100})$")
LOG_PATH = re.compile(r"^/api/agents/([^/]{1,100})/log$")
ACTION_BODY = 64 * 1024     # an action's body (a decision's reason); more is refused (413)
PAGE_SIZE, MAX_PAGE = 50, 200
SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
)


class Dashboard:
    """Everything a request needs: the team, the data, the credentials, the CSRF token."""

    def __init__(self, team, snapshots: Snapshots, username: str, password: str):
        self.team = team
        self.snapshots = snapshots
        self.username = username
        self.password = password
        self.csrf_token = secrets.token_urlsafe(32)
        self.histogram = promexport.DurationHistogram()
        self.page = PAGE.read_text(encoding="utf-8").replace("{{CSRF_TOKEN}}", self.csrf_token)

    def authorized(self, header: str | None) -> bool:
        return basic_auth_ok(header, self.username, self.password)

    def use_team(self, team) -> None:
        """The team file was applied (SIGHUP): show and act on its agents from now on."""
        self.snapshots.use_team(team)
        self.team = team

    def metrics(self) -> bytes:
        return self.snapshots.run(self._metrics)

    def _metrics(self) -> bytes:
        status, _ = self.snapshots.shared_status()
        return promexport.render(status, self.snapshots.queue, self.team.names, self.histogram)

    def call(self, method: str, *args: Any) -> Any:
        """One coffee.* call to supervisord (the tests' seam)."""
        return client.call(self.snapshots.endpoint, method, *args, timeout=30)

    def act(self, kind: str, target: str, action: str, reason: str = "") -> actions.Answer:
        # a decision is the signed-in person's, with the reason they typed
        extra = (action, self.username, reason) if kind == "approvals" else ()
        answer = actions.perform(kind, action, target, self.team.names, self.call, extra)
        self.snapshots.invalidate()
        return answer

    def tail_log(self, name: str, offset: int, length: int) -> actions.LogChunk:
        endpoint = self.snapshots.endpoint
        return actions.read_log(name, offset, length, self.team.names,
                                lambda method, *args: client.call(endpoint, method, *args,
                                                                  timeout=10))


class Handler(GuardedHandler):
    server_version = "coffee-team-web"
    app: Dashboard  # set on the subclass made by make_server

    # --- plumbing ---------------------------------------------------------------------------
    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if str(code) not in ("200", "304"):  # polls every second: log only what is unusual
            super().log_request(code, size)

    def _send(self, code: int, body: bytes, content_type: str,
              extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*SECURITY_HEADERS, *extra):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, default=str).encode(), "application/json")

    def _message(self, code: int, message: str) -> None:
        """One line: JSON {"message"} or {"error"} for the page and for scripts alike."""
        self._json(code, {"message" if code < 400 else "error": message})

    def _authenticate(self) -> bool:
        return self.authenticated(self.app.username, self.app.password, "coffee-team")

    # --- GET --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._authenticate():
            return
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            self._send(200, self.app.page.encode(), "text/html; charset=utf-8")
        elif path == "/api/dashboard":
            self._json(200, self.app.snapshots.dashboard())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST
            self._send(200, self.app.metrics(), CONTENT_TYPE_LATEST)
        elif path == "/api/tasks":
            self._tasks(parse_qs(url.query))
        elif match := TASK_PATH.match(path):
            self._task(match.group(1))
        elif match := LOG_PATH.match(path):
            self._log(match.group(1), parse_qs(url.query))
        elif match := AGENT_PATH.match(path):
            self._agent(match.group(1))
        else:
            self._message(404, f"no page {path[:80]!r}")

    do_HEAD = do_GET

    def _task(self, raw_id: str) -> None:
        if not raw_id.isdigit() or len(raw_id) > 12:
            return self._message(404, f"no task with id {raw_id[:20]!r}")
        try:
            self._json(200, self.app.snapshots.task(int(raw_id)))
        except TaskNotFound as exc:
            self._message(404, str(exc))

    def _tasks(self, query: dict[str, list[str]]) -> None:
        """A page of tasks, newest first: ``status``, ``agent``, ``before`` (the last id of
        the previous page), ``limit``; ``next_before`` is null on the last page."""
        status, agent = _one(query, "status"), _one(query, "agent")
        before, limit = _one(query, "before"), _one(query, "limit") or str(PAGE_SIZE)
        if status and status not in STATES:
            return self._message(400, f"status: one of {', '.join(STATES)}")
        if before and not _small_int(before):
            return self._message(400, "before: a task id")
        if not _small_int(limit) or not 1 <= int(limit) <= MAX_PAGE:
            return self._message(400, f"limit: 1 to {MAX_PAGE}")
        self._json(200, self.app.snapshots.task_page(status or None, (agent or "")[:100] or None,
                                                      int(before) if before else None,
                                                      int(limit)))

    def _log(self, name: str, query: dict[str, list[str]]) -> None:
        refusal = self._cross_site_refusal()
        if refusal:
            return self._message(403, refusal)
        offset, length = _one(query, "offset") or "0", _one(query, "length") or ""
        if not _small_int(offset) or (length and not _small_int(length)):
            return self._message(400, "offset and length: whole numbers of bytes")
        chunk = self.app.tail_log(name, int(offset),
                                  int(length) if length else actions.LOG_FIRST)
        self._json(chunk.code, chunk.data)

    def _agent(self, name: str) -> None:
        rows = {a["name"]: a for a in self.app.snapshots.dashboard()["agents"]}
        if name not in rows:
            return self._message(404, f"unknown agent {name[:60]!r}")
        self._json(200, rows[name])

    # --- POST -------------------------------------------------------------------------------
    def do_POST(self) -> None:
        if not self._authenticate():
            return
        body = self.read_body(ACTION_BODY)  # only a decision's reason means anything
        if body is None:
            return
        refusal = self._cross_site_refusal()
        if refusal:
            return self._message(403, refusal)
        match = ACTION_PATH.match(urlsplit(self.path).path)
        if not match:
            return self._message(404, f"no action at {self.path[:80]!r}")
        kind, target, action = match.groups()
        answer = self.app.act(kind, target, action, reason_of(body))
        self._message(answer.code, answer.message)

    def _cross_site_refusal(self) -> str:
        token = self.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.app.csrf_token.encode()):
            return "refused: missing or wrong CSRF token (reload the dashboard)"
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.headers.get("Host", ""):
            return f"refused: a request from another origin ({origin[:80]})"
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "refused: a cross-site request"
        return ""


def _one(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    return values[-1] if values else ""


def _small_int(text: str) -> bool:
    return text.isdigit() and len(text) <= 15


def reason_of(body: bytes) -> str:
    """``{"reason": "..."}`` of an approval's decision ("" for anything else)."""
    try:
        reason = json.loads(body or b"{}").get("reason", "")
    except (ValueError, AttributeError):
        return ""
    return reason[:1000] if isinstance(reason, str) else ""


def make_server(app: Dashboard, host: str, port: int,
                head_timeout: float = HEAD_TIMEOUT) -> GuardedServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    return GuardedServer((host, port), handler, name="web", head_timeout=head_timeout)
