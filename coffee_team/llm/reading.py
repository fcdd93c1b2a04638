"""What one run of a coding CLI came to: its answer and what it used. Pure data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREVIEW_CHARS = 500


class OutputError(ValueError):
    """The CLI's output is not what its preset reads; ``str()`` shows the start of it."""


@dataclass(frozen=True)
class Usage:
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def tokens(self) -> int:
        """What ``tokens_per_day`` counts: input and output (cache tokens are in the cost)."""
        return self.tokens_in + self.tokens_out

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.cost_usd + other.cost_usd, self.tokens_in + other.tokens_in,
                     self.tokens_out + other.tokens_out, self.cache_read + other.cache_read,
                     self.cache_write + other.cache_write)

    def as_dict(self) -> dict[str, Any]:
        return {"cost_usd": self.cost_usd, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cache_read": self.cache_read,
                "cache_write": self.cache_write}


@dataclass(frozen=True)
class Reading:
    """One run of the CLI, read: the answer text and what it cost."""
    text: str
    usage: Usage = field(default_factory=Usage)
    session_id: str | None = None
    is_error: bool = False
    turns: int | None = None
    subtype: str | None = None  # Claude Code's result subtype, e.g. error_max_budget_usd


def preview(text: str) -> str:
    """The first PREVIEW_CHARS characters of what was printed, for an error message."""
    text = text.strip()
    return repr(text[:PREVIEW_CHARS]) + ("…" if len(text) > PREVIEW_CHARS else "")
