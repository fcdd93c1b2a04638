"""supervisord's event-listener protocol over injected streams.

Wire format (supervisor/process.py ``_eventEnvelope``, dispatchers.py
``PEventListenerDispatcher``): the listener writes ``READY\\n``; supervisord sends one header
line of ``key:value`` tokens ending in ``len:N``, then exactly N characters of payload, whose
first line is again ``key:value`` tokens (the rest is event data, e.g. PROCESS_LOG text); the
listener answers ``RESULT 2\\nOK`` or ``RESULT 4\\nFAIL`` and sends ``READY\\n`` again.

stdout carries nothing but those tokens: anything else written there makes supervisord put the
listener in the UNKNOWN state and stop sending it events. Diagnostics go to stderr via ``log``.
"""
from __future__ import annotations

import codecs
import os
import re
import select
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from supervisor.childutils import get_asctime
from supervisor.dispatchers import PEventListenerDispatcher

READY_TOKEN = PEventListenerDispatcher.READY_FOR_EVENTS_TOKEN.decode("ascii")
RESULT_TOKEN_START = PEventListenerDispatcher.RESULT_TOKEN_START.decode("ascii")
# supervisord writes its header line in one go; a "line" longer than this is garbage, and
# refusing it keeps a stream without newlines from growing our buffer forever.
MAX_HEADER_LINE = 64 * 1024
# PROCESS_LOG events carry at most a few capture buffers; a bigger len is a bad header.
MAX_PAYLOAD = 16 * 1024 * 1024
# Once a header has arrived its payload is already in flight; waiting longer means the length
# was wrong, and the listener must get back to answering supervisord.
DEFAULT_PAYLOAD_TIMEOUT = 5.0
_READ_CHUNK = 64 * 1024
_DIGITS = re.compile(r"[0-9]+")


class MalformedEvent(ValueError):
    """The input was not a well-formed event; reply FAIL and read the next one."""


@dataclass(frozen=True)
class Event:
    headers: dict
    payload_headers: dict
    data: str
    eventname: str


class ListenerProtocol:
    def __init__(
        self,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        *,
        payload_timeout: float = DEFAULT_PAYLOAD_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        fd = _fileno_or_none(stdin)
        self._reader = _FdReader(fd) if fd is not None else _StreamReader(stdin)
        self._stdout = stdout
        self._stderr = stderr
        self._payload_timeout = payload_timeout
        self._clock = clock

    @classmethod
    def for_supervisor(cls, **options) -> ListenerProtocol:
        """Bind to the process's stdio, then point ``sys.stdout`` at stderr so that a stray
        ``print()`` anywhere in the listener cannot corrupt the protocol."""
        protocol = cls(sys.stdin, sys.stdout, sys.stderr, **options)
        sys.stdout = sys.stderr
        return protocol

    def ready(self) -> None:
        self._write(READY_TOKEN)

    def ok(self) -> None:
        self._send_result("OK")

    def fail(self) -> None:
        self._send_result("FAIL")

    def read_event(self, timeout: float | None = None) -> Event | None:
        """The next event; None if no event started within ``timeout`` seconds (None: wait).

        Raises EOFError when supervisord closed our stdin (it is shutting down) and
        MalformedEvent for input that is not an event; the stream stays usable after both.
        Without a real file descriptor (io.StringIO) the timeout is moot: what is there is all
        there will ever be.
        """
        header_line = self._reader.read_line(_deadline(timeout))
        if header_line is None:
            return None
        headers = _parse_tokens(header_line, "header")
        eventname, length = _required_envelope_fields(headers, header_line)
        payload = self._reader.read_exactly(length, _deadline(self._payload_timeout))
        payload_header_line, _, data = payload.partition("\n")
        payload_headers = _parse_tokens(payload_header_line, "payload header")
        return Event(headers, payload_headers, data, eventname)

    def log(self, msg: str) -> None:
        """Write ``msg`` to stderr, every line timestamped so multi-line messages stay greppable."""
        stamp = get_asctime(self._clock())
        lines = str(msg).rstrip("\n").split("\n")
        self._stderr.write("".join(f"{stamp} {line}\n" for line in lines))
        self._stderr.flush()

    def _send_result(self, result: str) -> None:
        # supervisord counts the result length in bytes.
        self._write(f"{RESULT_TOKEN_START}{len(result.encode('utf-8'))}\n{result}")

    def _write(self, token: str) -> None:
        self._stdout.write(token)
        self._stdout.flush()


class _FdReader:
    """Reads a real pipe with select() so waits can time out.

    It reads the descriptor directly, bypassing the TextIO object's own buffer, so nothing else
    may read from that stdin. Decoding is incremental because supervisord counts ``len`` in
    characters of its (UTF-8 encoded) payload and a chunk may end mid-character.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._eof = False

    def read_line(self, deadline: float | None) -> str | None:
        while True:
            newline = self._buffer.find("\n")
            if newline > MAX_HEADER_LINE or (newline < 0 and len(self._buffer) > MAX_HEADER_LINE):
                self._discard_overlong_line(deadline)
                raise MalformedEvent(f"header line longer than {MAX_HEADER_LINE} characters")
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                return line
            if self._eof:
                self._raise_eof_with_partial_line()
            if not self._fill(deadline):
                return None  # a partial line stays buffered for the next call

    def read_exactly(self, length: int, deadline: float) -> str:
        while len(self._buffer) < length:
            if self._eof or not self._fill(deadline):
                received, self._buffer = len(self._buffer), ""
                cause = "end of input" if self._eof else "timeout"
                raise _truncated_payload(received, length, cause)
        payload, self._buffer = self._buffer[:length], self._buffer[length:]
        return payload

    def _discard_overlong_line(self, deadline: float | None) -> None:
        """Drop the garbage up to its newline, so the next read starts on a fresh line.

        Only chunks already buffered or arriving before ``deadline`` are dropped, keeping the
        memory bounded; any remainder after that is rejected by the next read.
        """
        while True:
            newline = self._buffer.find("\n")
            if newline >= 0:
                self._buffer = self._buffer[newline + 1 :]
                return
            self._buffer = ""
            if self._eof or not self._fill(deadline):
                return

    def _raise_eof_with_partial_line(self) -> None:
        partial, self._buffer = self._buffer, ""
        if partial:
            raise MalformedEvent(f"truncated header line at end of input: {_excerpt(partial)}")
        raise EOFError("supervisord closed the event stream")

    def _fill(self, deadline: float | None) -> bool:
        """Wait for input until ``deadline`` and buffer one chunk; False if the wait timed out."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([self._fd], [], [], wait)
        if not readable:
            return False
        chunk = os.read(self._fd, _READ_CHUNK)
        self._eof = not chunk
        self._buffer += self._decoder.decode(chunk, final=self._eof)
        return True


class _StreamReader:
    """Reads a stream without a file descriptor (io.StringIO in tests); never waits."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def read_line(self, deadline: float | None) -> str | None:
        line = self._stream.readline(MAX_HEADER_LINE + 1)
        if line == "":
            raise EOFError("supervisord closed the event stream")
        if line.endswith("\n"):
            return line[:-1]
        if len(line) > MAX_HEADER_LINE:
            self._skip_rest_of_line()
            raise MalformedEvent(f"header line longer than {MAX_HEADER_LINE} characters")
        raise MalformedEvent(f"truncated header line at end of input: {_excerpt(line)}")

    def read_exactly(self, length: int, deadline: float) -> str:
        payload = self._stream.read(length)
        if len(payload) < length:
            raise _truncated_payload(len(payload), length, "end of input")
        return payload

    def _skip_rest_of_line(self) -> None:
        while True:
            rest = self._stream.readline(MAX_HEADER_LINE)
            if rest == "" or rest.endswith("\n"):
                return


def _parse_tokens(line: str, what: str) -> dict[str, str]:
    """``key:value`` tokens separated by whitespace, like ``childutils.get_headers``, but a
    token without a colon is a MalformedEvent instead of a crash, and values may hold colons."""
    headers = {}
    for token in line.split():
        key, colon, value = token.partition(":")
        if not colon or not key:
            raise MalformedEvent(f"bad {what} token {_excerpt(token)} in {_excerpt(line)}")
        headers[key] = value
    return headers


def _required_envelope_fields(headers: dict[str, str], line: str) -> tuple[str, int]:
    eventname = headers.get("eventname")
    if not eventname:
        raise MalformedEvent(f"header without eventname: {_excerpt(line)}")
    length = headers.get("len")
    if length is None or not _DIGITS.fullmatch(length):
        raise MalformedEvent(f"header without a valid len: {_excerpt(line)}")
    if int(length) > MAX_PAYLOAD:
        raise MalformedEvent(f"payload length {length} exceeds {MAX_PAYLOAD}")
    return eventname, int(length)


def _truncated_payload(received: int, length: int, cause: str) -> MalformedEvent:
    return MalformedEvent(f"truncated payload: got {received} of {length} characters ({cause})")


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _fileno_or_none(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return None


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
