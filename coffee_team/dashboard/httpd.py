"""The web program's HTTP server, hardened for a port any local user can reach.

``http.server``'s threaded server gives every connection a thread for as long as the client
likes: ~1,000 idle connections make it unreachable, and one byte every few seconds keeps a
request open forever (slowloris). Here:

- a connection has ``HEAD_TIMEOUT`` seconds (the server's ``head_timeout``), in total, to
  deliver a request's line and headers, whether it is new or kept alive after a response; its
  body then gets that plus one second per ``BODY_RATE`` bytes. The deadline is checked before
  every read, so trickling bytes does not extend it;
- at most ``MAX_CONNECTIONS`` connections are served at once. At the cap a new one evicts the
  connection that has waited longest without sending a complete request head (an idle flood
  cannot lock out a client that sends its request at once); when every connection is busy
  with a request, the new one is answered 503 at once and closed;
- request bodies are capped by the handler (``read_body``): 413 beyond, before reading it;
- a response is written within ``WRITE_TIMEOUT`` (a client that does not read is dropped);
- an unauthenticated request is answered 401 and its connection closed.

What a flood still costs: while one local user keeps opening connections faster than
requests complete, others may see 503s or dropped connections on this port; supervisord and
the agents are never reached by it (docs/operations.md, "What the ports expose").
"""
from __future__ import annotations

import base64
import hmac
import io
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

HEAD_TIMEOUT = 10.0         # default seconds for a request line and headers, idle time included
BODY_RATE = 256 * 1024      # bytes per second a body must at least arrive at
WRITE_TIMEOUT = 20.0        # seconds a client may take to read a response
MAX_CONNECTIONS = 64        # served at once, per listening port
HARD_LIMIT = 2              # x MAX_CONNECTIONS: threads, counting evicted ones still closing
TALLY_EVERY = 60.0          # seconds between log lines counting dropped connections
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 34\r\n\r\n"
        b"too many connections; retry later\n")


def basic_auth_ok(header: str | None, username: str, password: str) -> bool:
    """An ``Authorization: Basic`` header naming exactly this user and password."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, given = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    # both compared in constant time, and always both (no early exit on the user name)
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_password = hmac.compare_digest(given.encode(), password.encode())
    return ok_user and ok_password


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each bounded by what is left of the handler's current deadline."""

    def __init__(self, sock: socket.socket, handler: GuardedHandler):
        self.sock = sock
        self.handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.handler.deadline - self.handler.clock()
        if remaining <= 0:
            raise TimeoutError("request not complete within its deadline")
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(WRITE_TIMEOUT)


class GuardedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them (see the module)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler],
                 max_connections: int = MAX_CONNECTIONS, name: str = "web",
                 head_timeout: float = HEAD_TIMEOUT):
        super().__init__(address, handler)
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.name = name
        self._lock = threading.Lock()
        self._open = 0
        self._waiting: dict[socket.socket, float] = {}  # no complete request head since
        self.dropped = {"timed out": 0, "evicted": 0, "refused": 0}
        self._tally_at = time.monotonic()

    # --- the cap ----------------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            admitted = self._open < self.max_connections or (
                self._open < HARD_LIMIT * self.max_connections and self._evict_oldest())
            if admitted:
                self._open += 1
                self._waiting[request] = time.monotonic()
            else:
                self.dropped["refused"] += 1
        if not admitted:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed(request)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed(request)

    def _closed(self, request: Any) -> None:
        with self._lock:
            self._open -= 1
            self._waiting.pop(request, None)

    def _evict_oldest(self) -> bool:
        """Under the lock: cut the connection waiting longest for its request head."""
        if not self._waiting:
            return False
        oldest = min(self._waiting, key=self._waiting.__getitem__)
        del self._waiting[oldest]
        try:
            oldest.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
        except OSError:
            pass
        self.dropped["evicted"] += 1
        return True

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def waiting(self, request: Any, since: float) -> None:
        with self._lock:
            self._waiting[request] = since

    def busy(self, request: Any) -> None:
        with self._lock:
            self._waiting.pop(request, None)

    def connections(self) -> tuple[int, int]:
        """(open, of which waiting for a request head)."""
        with self._lock:
            return self._open, len(self._waiting)

    # --- what a flood leaves in the log ---------------------------------------------------
    def count(self, what: str) -> None:
        with self._lock:
            self.dropped[what] += 1

    def service_actions(self) -> None:
        """Once a minute at most, one line counting the connections dropped meanwhile (one
        line each would fill the log during a flood)."""
        now = time.monotonic()
        if now - self._tally_at < TALLY_EVERY:
            return
        with self._lock:
            dropped, self.dropped = self.dropped, dict.fromkeys(self.dropped, 0)
        self._tally_at = now
        if any(dropped.values()):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.name}: connections dropped in "
                  f"the last {TALLY_EVERY:g}s: " + ", ".join(f"{n} {k}" for k, n in
                                                           dropped.items()),
                  file=sys.stderr, flush=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind, exc = sys.exc_info()[:2]
        if kind is not None and issubclass(kind, OSError):
            return  # a client that went away (reset, broken pipe): nothing to report
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.name}: error serving "
              f"{client_address[0] if client_address else '?'}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)


class GuardedHandler(BaseHTTPRequestHandler):
    """Deadlines on every read, a capped body, one-line logs; subclasses add the routes."""

    protocol_version = "HTTP/1.1"
    server: GuardedServer
    clock: Callable[[], float] = staticmethod(time.monotonic)
    deadline = 0.0

    def setup(self) -> None:
        self.connection = self.request
        self.connection.settimeout(WRITE_TIMEOUT)
        if self.connection.family != socket.AF_UNIX:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self))
        self.wfile = self.connection.makefile("wb", 0)

    def handle_one_request(self) -> None:
        now = self.clock()
        self.deadline = now + self.server.head_timeout
        self.server.waiting(self.request, now)
        try:
            super().handle_one_request()
        except OSError:  # reset or evicted mid-request: nothing to answer
            self.close_connection = True

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.busy(self.request)
        return ok

    def log_error(self, format: str, *args: Any) -> None:
        if args and isinstance(args[0], TimeoutError):
            self.server.count("timed out")  # counted, not logged one by one
            return
        super().log_error(format, *args)

    def log_message(self, format: str, *args: Any) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {self.server.name}: {self.address_string()} {format % args}",
              file=sys.stderr, flush=True)

    def send_plain(self, code: int, text: str, extra: tuple[tuple[str, str], ...] = (),
                   close: bool = False) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def authenticated(self, username: str, password: str, realm: str) -> bool:
        """True with the right credentials; else 401 and the connection closes (a client
        without them holds no thread past its answer)."""
        if basic_auth_ok(self.headers.get("Authorization"), username, password):
            return True
        self.send_plain(401, "authentication required\n",
                        (("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),),
                        close=True)
        return False

    def read_body(self, limit: int, required: bool = False) -> bytes | None:
        """The request body, at most ``limit`` bytes; None once an error was answered
        (411 no length, 413 too large, 400 a bad length; the connection then closes)."""
        if self.headers.get("Transfer-Encoding"):
            self.send_plain(411, "send a Content-Length (no chunked bodies)\n", close=True)
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            if required:
                self.send_plain(411, "Content-Length required\n", close=True)
                return None
            return b""
        if not raw.strip().isdigit():
            self.send_plain(400, "bad Content-Length\n", close=True)
            return None
        length = int(raw)
        if length > limit:
            self.send_plain(413, f"request body over {limit} bytes\n", close=True)
            return None
        self.deadline = self.clock() + self.server.head_timeout + length / BODY_RATE
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body
