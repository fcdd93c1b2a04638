"""The one fake clock of the test suite: time moves only when a test says so."""
from __future__ import annotations

T0 = 1_700_000_000.0  # epoch seconds, late 2023: a plausible "now" for timestamps


class FakeClock:
    """A callable clock (epoch seconds) that moves only when told to."""

    def __init__(self, start: float = T0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, when: float) -> None:
        self.now = float(when)
