"""A coding CLI's stdout as the runner reads it while the CLI runs.

``EventScan`` reads a streaming CLI's JSON lines as they come: each event goes to the preset's
stream reader (stream.py), its steps are written to the agent's log as tagged lines (instead
of the raw JSON) and shown as the current step, and ``on_event`` runs after each (the run's
spend and budgets, meter.py). Lines that are no JSON object are logged as they are.
``StdoutTail`` keeps the end of stdout for presets that read it whole.

An answer is read whole up to OUTPUT_TAIL bytes: the pump hands a line longer than a command
result can be (output.MAX_LINE) on in pieces, and EventScan joins them again up to that size
(a Claude Code result event holding a long answer, its ``send`` list in it). A longer line is
not read, and ``dropped`` says how long it was, for the run's error.
"""
from __future__ import annotations

import json
from typing import Any, Callable

OUTPUT_TAIL = 8 << 20  # bytes of stdout kept for the preset (results and usage come last)


class StdoutTail:
    """Keeps the last OUTPUT_TAIL bytes of stdout (fed complete lines by the runner's pump)."""

    def __init__(self, limit: int = OUTPUT_TAIL):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0  # bytes of stdout not kept (the start of a longer output)

    def feed(self, lines: bytes) -> None:
        self.data += lines
        if len(self.data) > 2 * self.limit:  # trim in batches, not on every line
            self.dropped += len(self.data) - self.limit
            del self.data[:-self.limit]

    def not_read(self) -> str:
        """Why the answer may be missing from what was read ('' when all of it was)."""
        size = self.dropped + len(self.data)
        return (f"; its output was {size} bytes, only the last {self.limit} were read"
                if size > self.limit else "")

    def text(self) -> str:
        return bytes(self.data[-self.limit:]).decode(errors="replace")


class EventScan(StdoutTail):
    shows_steps = True  # the pump logs stdout's raw lines no more, and sets no step

    def __init__(self, stream: Any, tag: str, sink: Any, ctx: Any,
                 on_event: Callable[[], None]):
        super().__init__()
        self.stream, self.tag, self.sink, self.ctx = stream, tag.encode(), sink, ctx
        self.on_event = on_event
        self.partial = bytearray()  # the start of a line handed on in pieces
        self.skipping = False       # inside a line over the limit, not read
        self.skipped = 0            # bytes of that line so far
        self.longest_dropped = 0

    def feed(self, lines: bytes) -> None:
        super().feed(lines)
        if self.partial or self.skipping or not lines.endswith(b"\n"):
            lines = self._join(lines)
        self._events(lines)

    def end(self) -> None:
        """stdout ended: its last line, if it had no newline."""
        rest, skipping = bytes(self.partial), self.skipping
        if skipping:
            self.longest_dropped = max(self.longest_dropped, self.skipped)
        self.partial, self.skipping, self.skipped = bytearray(), False, 0
        if rest and not skipping:
            self._events(rest)

    def _events(self, lines: bytes) -> None:
        for raw in lines.splitlines():
            event = _event(raw)
            if event is None:
                if raw.strip():
                    self._log([raw])
                continue
            steps = self.stream.feed(event)
            self._log([step.line.encode() for step in steps])
            for step in steps:
                if step.progress:
                    self.ctx.step(step.progress)
            self.on_event()  # may raise OverBudget: the run stops at this event

    def _join(self, lines: bytes) -> bytes:
        """The complete lines in ``lines``, the first with the pieces of it that came
        before; an unfinished line is kept for the next feed, up to the limit."""
        cut = lines.rfind(b"\n") + 1
        head, tail = lines[:cut], lines[cut:]
        if head:
            if self.skipping:  # the end of a line over the limit: not read
                end = head.index(b"\n") + 1
                self.longest_dropped = max(self.longest_dropped, self.skipped + end)
                head = head[end:]
            else:
                head = bytes(self.partial) + head
            self.partial, self.skipping, self.skipped = bytearray(), False, 0
        if tail and self.skipping:
            self.skipped += len(tail)
        elif tail:
            self.partial += tail
            if len(self.partial) > self.limit:
                self.skipping, self.skipped = True, len(self.partial)
                self.partial = bytearray()
        return head

    def not_read(self) -> str:
        if self.longest_dropped:
            return (f"; a line of its output was over {self.limit} bytes "
                    f"({self.longest_dropped}), not read")
        return super().not_read()

    def _log(self, lines: list[bytes]) -> None:
        if lines:
            self.sink.write(b"".join(self.tag + line + b"\n" for line in lines))


def _event(raw: bytes) -> dict | None:
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        value = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None
