"""A TCP proxy a test controls, between the team and PostgreSQL (issue 26: partitions).

``TcpProxy(host, port)`` listens on 127.0.0.1 (``.port``) and forwards each connection to the
server. ``partition()`` cuts it the way a lost network does, without resets: every byte in
either direction is held (neither delivered nor dropped), a connection opened meanwhile is
accepted and never answered, and a client that goes away (killed) is closed on the server's
side only at ``heal()``, when everything held is delivered and forwarding resumes.
``delay`` (seconds) holds each chunk from the server that long: a server whose commits take
that long (a slow disk).

A userland proxy cannot make the client's kernel time out (its keepalives and unacknowledged
data are answered by the proxy's end), so what it tests is the waiting itself: the processes
behind it must keep their heartbeats and restarts while every database call waits.
"""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.delay = 0.0
        self.closed = threading.Event()
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (postgresql://user@host:port/db...) through this proxy."""
        from urllib.parse import urlsplit, urlunsplit
        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))

    def partition(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(self._track(client),),
                             daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.flowing.wait()  # opened during a partition: never answered until it heals
        try:
            server = self._track(socket.create_connection(self.target, timeout=10))
        except OSError:
            client.close()
            return
        server.settimeout(None)
        threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()
        self._pump(client, server, False)

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while not self.closed.is_set():
                if not select.select([src], [], [], 0.5)[0]:
                    continue
                data = src.recv(65536)
                self.flowing.wait()  # held while cut, delivered at heal
                if not data:
                    break
                if from_server and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
