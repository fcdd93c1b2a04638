"""A coding CLI's stdout as the runner reads it while the CLI runs.

``EventScan`` reads a streaming CLI's JSON lines as they come: each event goes to the preset's
stream reader (stream.py), its steps are written to the agent's log as tagged lines (instead
of the raw JSON) and shown as the current step, and ``on_event`` runs after each (the run's
spend and budgets, meter.py). Lines that are no JSON object are logged as they are.
``StdoutTail`` keeps the end of stdout for presets that read it whole.
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

    def feed(self, lines: bytes) -> None:
        self.data += lines
        if len(self.data) > 2 * self.limit:  # trim in batches, not on every line
            del self.data[:-self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit:]).decode(errors="replace")


class EventScan(StdoutTail):
    shows_steps = True  # the pump logs stdout's raw lines no more, and sets no step

    def __init__(self, stream: Any, tag: str, sink: Any, ctx: Any,
                 on_event: Callable[[], None]):
        super().__init__()
        self.stream, self.tag, self.sink, self.ctx = stream, tag.encode(), sink, ctx
        self.on_event = on_event

    def feed(self, lines: bytes) -> None:
        super().feed(lines)
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
