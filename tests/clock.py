"""The one fake clock of the test suite: time moves only when a test says so.

It is two clocks, as every process has: the wall clock (calling it, epoch seconds) and the
monotonic clock (``monotonic()``). Time passing moves both (``advance``); ``jump`` steps the
wall clock alone, as ``date -s``, an NTP step or a resumed VM does.
"""
from __future__ import annotations

T0 = 1_700_000_000.0  # epoch seconds, late 2023: a plausible "now" for timestamps
MONO0 = 5_000.0  # the monotonic clock's reading at T0 (any value: only its differences count)


class FakeClock:
    """A callable clock (epoch seconds) that moves only when told to."""

    def __init__(self, start: float = T0):
        self.now = float(start)
        self.mono = MONO0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> float:
        """Time passes: both clocks move."""
        if seconds < 0:
            raise ValueError("time does not run backwards; jump() steps the wall clock")
        self.now += seconds
        self.mono += seconds
        return self.now

    def jump(self, seconds: float) -> float:
        """The wall clock steps by ``seconds`` (either way); the monotonic clock does not."""
        self.now += seconds
        return self.now

    def set(self, when: float) -> None:
        """Time passes until the wall clock reads ``when``."""
        self.advance(float(when) - self.now)
