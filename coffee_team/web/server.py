"""The web program: one dashboard page, its JSON, the actions and ``/metrics``.

Standard library ``http.server`` (threaded): the program serves one page, a few JSON routes and
a text endpoint to a handful of people and one Prometheus, so a framework would add a
dependency and start-up time without adding anything the page needs.

Security: every path needs HTTP basic auth (the team's ``web.username`` and the password from
``web.password_env``); actions are POST only and need both the page's CSRF token (in a header
a cross-site form cannot set, and that another origin cannot read from the page) and, when the
browser sends one, an ``Origin`` equal to this server's own.
"""
from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import client, promexport
from ..errors import TaskNotFound
from . import actions
from .snapshot import Snapshots

PAGE = Path(__file__).with_name("page.html")
CSRF_HEADER = "X-Coffee-CSRF"
ACTION_PATH = re.compile(r"^/api/(agents|tasks|notifications)/([^/]{1,100})/([a-z]+)$")
TASK_PATH = re.compile(r"^/api/tasks/([^/]{1,100})$")
AGENT_PATH = re.compile(r"^/api/agents/([^/]{1,100})$")
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
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        # both compared in constant time, and always both (no early exit on the user name)
        ok_user = hmac.compare_digest(user.encode(), self.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password

    def metrics(self) -> bytes:
        return self.snapshots.run(self._metrics)

    def _metrics(self) -> bytes:
        status, _ = self.snapshots.shared_status()
        return promexport.render(status, self.snapshots.queue, self.team.names, self.histogram)

    def act(self, kind: str, target: str, action: str) -> actions.Answer:
        endpoint = self.snapshots.endpoint
        answer = actions.perform(kind, action, target, self.team.names,
                                 lambda method, *args: client.call(endpoint, method, *args,
                                                                   timeout=30))
        self.snapshots.invalidate()
        return answer


class Handler(BaseHTTPRequestHandler):
    server_version = "coffee-team-web"
    protocol_version = "HTTP/1.1"
    app: Dashboard  # set on the subclass made by make_server

    # --- plumbing ---------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} web: {self.address_string()} {format % args}", file=sys.stderr,
              flush=True)

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
        if self.app.authorized(self.headers.get("Authorization")):
            return True
        self._send(401, b"authentication required\n", "text/plain; charset=utf-8",
                   (("WWW-Authenticate", 'Basic realm="coffee-team", charset="UTF-8"'),))
        return False

    # --- GET --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._authenticate():
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, self.app.page.encode(), "text/html; charset=utf-8")
        elif path == "/api/dashboard":
            self._json(200, self.app.snapshots.dashboard())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST
            self._send(200, self.app.metrics(), CONTENT_TYPE_LATEST)
        elif match := TASK_PATH.match(path):
            self._task(match.group(1))
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

    def _agent(self, name: str) -> None:
        rows = {a["name"]: a for a in self.app.snapshots.dashboard()["agents"]}
        if name not in rows:
            return self._message(404, f"unknown agent {name[:60]!r}")
        self._json(200, rows[name])

    # --- POST -------------------------------------------------------------------------------
    def do_POST(self) -> None:
        if not self._authenticate():
            return
        self._drain_body()
        refusal = self._cross_site_refusal()
        if refusal:
            return self._message(403, refusal)
        match = ACTION_PATH.match(urlsplit(self.path).path)
        if not match:
            return self._message(404, f"no action at {self.path[:80]!r}")
        kind, target, action = match.groups()
        answer = self.app.act(kind, target, action)
        self._message(answer.code, answer.message)

    def _drain_body(self) -> None:
        """Actions take no body; read what was sent so the connection stays usable."""
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 65536:
            self.rfile.read(length)

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


def make_server(app: Dashboard, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
