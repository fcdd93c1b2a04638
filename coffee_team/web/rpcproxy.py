"""``team.http``: XML-RPC over HTTP, served by the web program and passed on to supervisord's
unix socket.

supervisord's own ``[inet_http_server]`` has no connection cap, no idle timeout and no body
limit, and serves supervisor's web UI (whose GET links stop programs) on the same port: ~1,100
idle connections used up its descriptors, so a crashed agent could not be spawned again, and
a 300 MB body took it to 2.8 GB. supervisord now listens only on its 0700 unix socket; this
gateway (``httpd``'s limits) keeps the ``http:`` meaning — the same ``/RPC2`` path, the same
credentials — and forwards nothing else: only an authenticated ``POST /RPC2`` of at most
``MAX_BODY`` bytes reaches supervisord, at most ``UPSTREAM_CALLS`` at a time.
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from ..client import UnixConnection
from ..dashboard.httpd import HEAD_TIMEOUT, GuardedHandler, GuardedServer

RPC_PATH = "/RPC2"
MAX_BODY = 16 * 1024 * 1024   # bytes: a 1 MiB task content, XML-escaped, fits many times over
UPSTREAM_CALLS = 8            # calls supervisord serves for this gateway at once
CHUNK = 64 * 1024
# Headers of supervisord's answer a client needs; nothing else is passed on.
PASSED_HEADERS = ("Content-Type",)


class Gateway:
    """What the handler needs: credentials, supervisord's socket, how long a call may take."""

    def __init__(self, username: str, password: str, socket_path: str, call_timeout: float):
        self.username = username
        self.password = password
        self.socket_path = socket_path
        self.call_timeout = call_timeout
        self.upstream = threading.BoundedSemaphore(UPSTREAM_CALLS)


class RpcHandler(GuardedHandler):
    server_version = "coffee-team-rpc"
    gateway: Gateway  # set on the subclass made by make_rpc_server

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if str(code) != "200":  # automation may call often: log only what is unusual
            super().log_request(code, size)

    def do_POST(self) -> None:
        gateway = self.gateway
        if not self.authenticated(gateway.username, gateway.password, "coffee-team XML-RPC"):
            return
        if urlsplit(self.path).path != RPC_PATH:
            return self.send_plain(404, f"only XML-RPC here: POST {RPC_PATH}\n")
        body = self.read_body(MAX_BODY, required=True)
        if body is None:
            return
        if not gateway.upstream.acquire(timeout=gateway.call_timeout):
            return self.send_plain(503, "supervisord is busy with other calls; retry\n")
        try:
            self._forward(body)
        finally:
            gateway.upstream.release()

    def do_GET(self) -> None:
        """supervisor's web UI is never served: its GET links stop and start programs."""
        if self.authenticated(self.gateway.username, self.gateway.password,
                              "coffee-team XML-RPC"):
            self.send_plain(404, f"only XML-RPC here: POST {RPC_PATH}\n")

    do_HEAD = do_GET

    def _forward(self, body: bytes) -> None:
        upstream = UnixConnection(self.gateway.socket_path, self.gateway.call_timeout)
        try:
            try:
                upstream.request("POST", RPC_PATH, body, {"Content-Type": "text/xml"})
                answer = upstream.getresponse()
            except OSError as exc:
                return self.send_plain(502, f"supervisord does not answer on its socket: "
                                            f"{exc.strerror or exc}\n")
            self.send_response(answer.status)
            for name in PASSED_HEADERS:
                if answer.getheader(name):
                    self.send_header(name, answer.getheader(name))
            length = answer.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
            else:  # read to the end: this connection ends with it
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            while chunk := answer.read(CHUNK):
                self.wfile.write(chunk)
        finally:
            upstream.close()


def make_rpc_server(gateway: Gateway, host: str, port: int,
                    head_timeout: float = HEAD_TIMEOUT) -> GuardedServer:
    handler = type("BoundRpcHandler", (RpcHandler,), {"gateway": gateway})
    return GuardedServer((host, port), handler, name="http", head_timeout=head_timeout)
