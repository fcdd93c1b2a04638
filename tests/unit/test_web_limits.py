"""The web program's HTTP server against floods (issue 26, finding 2): ~1,000 idle
connections made the dashboard unreachable; a request trickled a byte at a time stayed open.

A real ``GuardedServer`` on loopback with a shortened head timeout and a small cap, so each
flood is bounded in count (at most 200 sockets) and time (a few seconds)."""
from __future__ import annotations

import base64
import os
import socket
import threading
import time
import xmlrpc.client

import pytest

from coffee_team.dashboard import httpd

HEAD = 1.0   # the head timeout in these tests (10 s in the program)
CAP = 16
AUTH = "Basic " + base64.b64encode(b"ops:pw").decode()


class Echo(httpd.GuardedHandler):
    release = threading.Event()

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if not self.authenticated("ops", "pw", "test"):
            return
        if self.path == "/slow":
            self.release.wait(10)
        self.send_plain(200, "ok\n")

    def do_POST(self):
        if not self.authenticated("ops", "pw", "test"):
            return
        body = self.read_body(1000, required=True)
        if body is not None:
            self.send_plain(200, f"{len(body)}\n")


@pytest.fixture
def server():
    Echo.release = threading.Event()
    srv = httpd.GuardedServer(("127.0.0.1", 0), Echo, max_connections=CAP, name="test",
                              head_timeout=HEAD)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        Echo.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def connect(srv) -> socket.socket:
    return socket.create_connection(srv.server_address[:2], timeout=5)


def ask(srv, request: bytes, timeout: float = 5) -> tuple[bytes, float]:
    """Send ``request`` on a new connection; (the answer up to the server's close, seconds)."""
    started = time.monotonic()
    with connect(srv) as sock:
        sock.settimeout(timeout)
        sock.sendall(request)
        return read_to_close(sock), time.monotonic() - started


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def closed_by_server(sock: socket.socket, within: float) -> float | None:
    """Seconds until the server closed ``sock`` (it sent nothing), None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def get(path: str = "/", auth: bool = True, close: bool = True) -> bytes:
    headers = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    headers += f"Authorization: {AUTH}\r\n" if auth else ""
    headers += "Connection: close\r\n" if close else ""
    return (headers + "\r\n").encode()


def test_an_idle_flood_neither_locks_out_a_client_nor_grows_past_the_cap(server):
    flood, admitted_max = [], 0
    try:
        for _ in range(200):
            flood.append(connect(server))
            admitted_max = max(admitted_max, server.connections()[0])
        answer, took = ask(server, get())
        assert answer.startswith(b"HTTP/1.1 200") and took < 1.0, (answer, took)
        # each new connection beyond the cap evicted the one that waited longest
        assert admitted_max <= httpd.HARD_LIMIT * CAP
        assert threading.active_count() < httpd.HARD_LIMIT * CAP + 10
        # the survivors are cut at the head timeout; nothing stays open past it
        assert all(closed_by_server(sock, HEAD + 1.0) is not None for sock in flood[-CAP:])
    finally:
        for sock in flood:
            sock.close()
    deadline = time.monotonic() + 2  # the last handler threads see their closed sockets
    while server.connections() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.connections() == (0, 0)
    # evicted by newer ones, or (opened more slowly than the head timeout) timed out
    assert server.dropped["evicted"] + server.dropped["timed out"] >= 200 - CAP


def test_a_request_trickled_byte_by_byte_is_cut_at_the_deadline(server):
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        started, sent = time.monotonic(), 0
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() - started < 5 * HEAD:
                sock.sendall(b"X")  # a header that never ends, one byte per 50 ms
                sent += 1
                time.sleep(0.05)
        took = time.monotonic() - started
    assert took < HEAD + 0.5 and sent >= 10, (took, sent)


def test_an_idle_keep_alive_connection_is_closed_after_the_head_timeout(server):
    with connect(server) as sock:
        sock.sendall(get(close=False))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        took = closed_by_server(sock, HEAD + 2)
    assert took is not None and took < HEAD + 0.5


def test_the_web_program_gives_each_server_its_blocks_head_timeout():
    from coffee_team.team import HttpSettings
    from coffee_team.web import main
    made = []

    def make(app, host, port, **options):
        made.append(options)
    main._listen(make, None, HttpSettings(port=1, username="u", password_env="P",
                                          head_timeout=2.5))
    main._listen(make, None, HttpSettings(port=1, username="u", password_env="P"))
    assert made == [{"head_timeout": 2.5}, {}]  # unset: the server's HEAD_TIMEOUT


def test_without_credentials_it_is_401_and_the_connection_closes(server):
    answer, took = ask(server, get(auth=False, close=False))
    assert answer.startswith(b"HTTP/1.1 401") and b"Connection: close" in answer
    assert took < HEAD  # closed by the server at once, not by the head timeout


def test_bodies_over_the_limit_are_refused_before_they_are_read(server):
    head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n".encode()
    answer, took = ask(server, head + b"Content-Length: 300000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and took < 0.5
    answer, _ = ask(server, head + b"Transfer-Encoding: chunked\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    answer, _ = ask(server, head + b"Connection: close\r\nContent-Length: 5\r\n\r\nhello")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n5\n")


def test_a_slow_body_is_cut_at_its_deadline(server):
    head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n".encode()
    with connect(server) as sock:
        sock.sendall(head + b"Content-Length: 900\r\n\r\n" + b"x" * 10)
        took = closed_by_server(sock, HEAD + 2)
    assert took is not None and took < HEAD + 0.5


def test_when_every_connection_is_busy_a_new_one_is_503_at_once(server):
    busy = []
    try:
        for _ in range(CAP):
            sock = connect(server)
            sock.sendall(get("/slow"))
            busy.append(sock)
        deadline = time.monotonic() + 5
        while server.connections() != (CAP, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        answer, took = ask(server, get())
        assert answer.startswith(b"HTTP/1.1 503") and took < 0.5, (answer, took)
        Echo.release.set()
        assert all(read_to_close(sock).startswith(b"HTTP/1.1 200") for sock in busy)
    finally:
        for sock in busy:
            sock.close()
    assert server.dropped["refused"] == 1


def test_the_dashboard_and_the_gateway_use_the_guarded_server():
    from coffee_team.web import rpcproxy
    from coffee_team.dashboard import server
    assert issubclass(server.Handler, httpd.GuardedHandler)
    assert issubclass(rpcproxy.RpcHandler, httpd.GuardedHandler)


# --- team.http's gateway: POST /RPC2 to supervisord's unix socket, nothing else -------------

@pytest.fixture
def gateway(tmp_path):
    """The gateway on loopback in front of a fake supervisord on a unix socket; yields
    (port, the requests the fake received)."""
    import socketserver
    from http.server import BaseHTTPRequestHandler

    from coffee_team.web import rpcproxy
    seen = []

    class Supervisord(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def address_string(self):
            return "unix"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, dict(self.headers), body))
            answer = xmlrpc.client.dumps(("RUNNING",), methodresponse=True).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    path = str(tmp_path / "supervisor.sock")
    upstream = socketserver.ThreadingUnixStreamServer(path, Supervisord)
    gate = rpcproxy.make_rpc_server(rpcproxy.Gateway("ops", "pw", path, 5), "127.0.0.1", 0)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05})
               for s in (upstream, gate)]
    for thread in threads:
        thread.start()
    try:
        yield gate.server_address[1], seen, upstream
    finally:
        for s in (upstream, gate):
            s.shutdown()
            s.server_close()


def test_the_gateway_passes_xmlrpc_on_and_nothing_else(gateway):
    from coffee_team import client
    port, seen, _ = gateway
    endpoint = client.Endpoint(f"http://127.0.0.1:{port}", "ops", "pw")
    assert client.call(endpoint, "supervisor.getState") == "RUNNING"
    ((path, headers, body),) = seen
    assert path == "/RPC2" and b"<methodName>supervisor.getState</methodName>" in body
    assert "Authorization" not in headers  # the password stays at the gateway
    for request in (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                    b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request + f"Authorization: {AUTH}\r\n\r\n".encode())
            assert read_to_close(sock).startswith(b"HTTP/1.1 404")
    with pytest.raises(xmlrpc.client.ProtocolError) as refused:
        client.Endpoint(f"http://127.0.0.1:{port}", "ops", "no").proxy(5).supervisor.getState()
    assert refused.value.errcode == 401
    assert len(seen) == 1


def test_the_gateway_caps_the_body_and_says_when_supervisord_is_gone(gateway, monkeypatch):
    from coffee_team import client
    from coffee_team.errors import SupervisorDown
    from coffee_team.web import rpcproxy
    port, seen, upstream = gateway
    endpoint = client.Endpoint(f"http://127.0.0.1:{port}", "ops", "pw")
    monkeypatch.setattr(rpcproxy, "MAX_BODY", 1000)
    with pytest.raises(xmlrpc.client.ProtocolError) as refused:
        client.call(endpoint, "coffee.sendMessage", "a", "b", "t", "x" * 2000)
    assert refused.value.errcode == 413
    assert seen == []
    upstream.shutdown()
    upstream.server_close()
    os.unlink(upstream.server_address)
    with pytest.raises(SupervisorDown, match="cannot reach its socket"):
        client.call(endpoint, "supervisor.getState")
