"""A command's output: streamed line by line into the agent's log, in bounded memory.

Lines are tagged with the task (``[#42] ...``) and written to the agent's stderr, which
supervisord puts in the agent's log, so ``coffee-team logs -f`` shows them as they come. Memory
stays bounded whatever the command prints: a partial line is capped, only a short tail is kept
for error messages, and the result is found by scanning each block once.

The result contract (docs/handlers.md): the JSON in the file named by ``COFFEE_RESULT_FILE``
if the command wrote it; else the whole stdout if it is one JSON document (small outputs, e.g.
pretty-printed); else the last line of stdout that parses as JSON. Text before it is output.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

from .errors import HandlerError

# The queue refuses a larger result (queue.core.MAX_CONTENT_BYTES), so a longer line can never
# be one: past this a line is logged in pieces instead of growing without bound.
RESULT_LIMIT = 1024 * 1024
MAX_LINE = RESULT_LIMIT + 1024
TAIL_BYTES = 4096
# A line that could be a JSON document. _LINE checks one line; _NEXT_LINE finds them after a
# newline: a literal first character lets the regex engine skip other lines at C speed (6x
# faster than '^' with re.M, which tries every position).
_JSON_START = rb'[ \t]*(?:[\[{"\-0-9]|(?:true|false|null)[ \t\r]*(?:\n|$))'
_LINE = re.compile(_JSON_START)
_NEXT_LINE = re.compile(rb"\n" + _JSON_START)
_NO_RESULT = object()
_LAST_LINES_FIRST = 8


STEP_CHARS = 160  # a step is one line in status and on the dashboard
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: Any, limit: int = STEP_CHARS) -> str:
    """The first non-blank line of ``text`` without control characters, cut at ``limit``."""
    if not isinstance(text, str):
        return ""
    for line in text.splitlines():
        line = _CONTROL.sub(" ", line).strip()
        if line:
            return line if len(line) <= limit else line[:limit - 1] + "…"
    return ""


def last_line(lines: bytes) -> str:
    """The last non-blank line of a block of output, as one_line shows it ('' if none).
    Read from the end, without splitting the block: a chatty command's chunks are 1 MiB."""
    end = len(lines)
    while end > 0:
        start = lines.rfind(b"\n", 0, end) + 1
        shown = one_line(lines[start:min(end, start + 4 * STEP_CHARS)].decode(errors="replace"))
        if shown:
            return shown
        end = start - 1
    return ""


def task_tag(task: dict) -> str:
    """What a task's output lines start with in the agent's log: ``[#42] `` or ``[periodic] ``."""
    return f"[#{task['id']}] " if task.get("id") is not None else "[periodic] "


def log(agent: str, message: str) -> None:
    """One line in the agent's log (its stderr; supervisord redirects it to the log file)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} {agent}: {message}", file=sys.stderr, flush=True)


class FdSink:
    """Writes bytes to a file descriptor (the agent's stderr by default), unbuffered, so a
    line is in supervisord's hands as soon as the command printed it."""

    def __init__(self, fd: int = 2):
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


class NullSink:
    """Where the raw stdout of a CLI goes when its events are logged as steps instead."""

    def write(self, data: bytes) -> None:
        pass


class TaggedLines:
    """Splits one stream into lines and writes them, each prefixed with ``tag``, in one write
    per chunk. Keeps the partial last line (capped at MAX_LINE) and a short tail."""

    def __init__(self, tag: bytes, sink: Any):
        self.tag = tag
        self.sink = sink
        self.pending = b""
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """Log the complete lines in ``pending + chunk``; return them (for the result scan)."""
        data = self.pending + chunk if self.pending else chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > MAX_LINE:
            cut = len(data)  # one overlong line: log it in pieces
        self.pending = data[cut:]
        lines = data[:cut]
        if lines:
            self._emit(lines)
        return lines

    def close(self) -> bytes:
        """Log the last line even without a newline; return it."""
        rest, self.pending = self.pending, b""
        if rest:
            self._emit(rest + b"\n")
        return rest

    def _emit(self, lines: bytes) -> None:
        body = lines[:-1] if lines.endswith(b"\n") else lines
        self.sink.write(self.tag + body.replace(b"\n", b"\n" + self.tag) + b"\n")
        self.tail = (self.tail + lines[-TAIL_BYTES:])[-TAIL_BYTES:]

    def last_line(self) -> str:
        lines = self.tail.decode(errors="replace").strip().splitlines()
        return lines[-1][:500] if lines else ""


class ResultScan:
    """Finds the command's result in its stdout, one block of complete lines at a time."""

    def __init__(self):
        self.last = _NO_RESULT
        self.whole: bytearray | None = bytearray()  # None once stdout outgrew RESULT_LIMIT
        self.seen_text = False

    def feed(self, lines: bytes) -> None:
        if not lines:
            return
        if self.whole is not None:
            self.whole += lines
            if len(self.whole) > RESULT_LIMIT:
                self.whole = None
        if not self.seen_text and lines.strip():
            self.seen_text = True
        # The last line that parses wins. Usually it is among the block's last few lines, so
        # look there first; only then scan the rest (in C: most lines are not candidates).
        end = len(lines)
        for _ in range(_LAST_LINES_FIRST):
            if end <= 0:
                return
            start = lines.rfind(b"\n", 0, end - 1) + 1
            if self._take(lines, start, end):
                return
            end = start
        starts = [m.start() + 1 for m in _NEXT_LINE.finditer(lines, 0, end)]
        if _LINE.match(lines, 0, end):
            starts.insert(0, 0)
        for start in reversed(starts):
            stop = lines.find(b"\n", start, end)
            if self._take(lines, start, end if stop < 0 else stop):
                return

    def _take(self, lines: bytes, start: int, end: int) -> bool:
        if not _LINE.match(lines, start, end):
            return False
        value = _parse(lines[start:end])
        if value is _NO_RESULT:
            return False
        self.last = value
        return True

    def result(self, command: str) -> Any:
        if self.whole is not None and self.whole.strip():
            value = _parse(bytes(self.whole))
            if value is not _NO_RESULT:
                return value
        if self.last is not _NO_RESULT:
            return self.last
        if self.seen_text:
            raise HandlerError(f"{command} printed no JSON result (the result is the last "
                               f"stdout line that parses as JSON, or $COFFEE_RESULT_FILE)")
        return None


def read_result_file(path: str, command: str) -> Any:
    """The result the command wrote to $COFFEE_RESULT_FILE, or _NO_RESULT if it wrote none."""
    try:
        with open(path, "rb") as f:
            data = f.read(RESULT_LIMIT + 1)
    except FileNotFoundError:
        return _NO_RESULT
    except OSError as exc:
        raise HandlerError(f"{command}: cannot read COFFEE_RESULT_FILE: {exc}") from None
    if len(data) > RESULT_LIMIT:
        raise HandlerError(f"{command}: COFFEE_RESULT_FILE is over {RESULT_LIMIT} bytes")
    if not data.strip():
        return None
    value = _parse(data)
    if value is _NO_RESULT:
        raise HandlerError(f"{command}: COFFEE_RESULT_FILE holds invalid JSON: "
                           f"{data[:200].decode(errors='replace')!r}")
    return value


def has_result(value: Any) -> bool:
    return value is not _NO_RESULT


def _parse(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # also UnicodeDecodeError
        return _NO_RESULT
