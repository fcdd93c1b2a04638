"""Predictive restart: when does an agent's memory, growing as it did lately, reach its limit?
A pure rule over the RSS samples the watchdog's health check already takes (``memory_trend``
in the team file: the window looked at, and how soon a crossing must be to act).
"""
from __future__ import annotations

from typing import Optional, Sequence

MIN_SAMPLES = 3
# The samples must cover this share of the window: a restart is never decided on a moment.
MIN_COVERAGE = 0.5


def growth_per_second(samples: Sequence[tuple[float, float]]) -> Optional[float]:
    """The least-squares slope (MB per second) of (time, rss_mb) samples; None for fewer
    than two distinct times."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread <= 0:
        return None
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread


def reaches_limit_in(samples: Sequence[tuple[float, float]], limit_mb: float, now: float,
                     window: float) -> Optional[float]:
    """Seconds until the RSS reaches ``limit_mb`` at the growth of the samples of the last
    ``window`` seconds (0 if already there); None when it does not grow, or when the samples
    are too few or cover too little of the window to tell."""
    recent = [(t, m) for t, m in samples if now - window <= t <= now]
    if len(recent) < MIN_SAMPLES or recent[-1][0] - recent[0][0] < window * MIN_COVERAGE:
        return None
    slope = growth_per_second(recent)
    current = recent[-1][1]
    if current >= limit_mb:
        return 0.0
    if slope is None or slope <= 0:
        return None
    return (limit_mb - current) / slope


def restart_due(samples: Sequence[tuple[float, float]], limit_mb: float, now: float,
                window: float, restart_before: float) -> Optional[float]:
    """``reaches_limit_in`` when it is within ``restart_before`` (restart now, between
    tasks), else None."""
    eta = reaches_limit_in(samples, limit_mb, now, window)
    return eta if eta is not None and eta <= restart_before else None


def keep(samples: list[tuple[float, float]], now: float, window: float) -> list:
    """The samples still inside the window (what the watchdog keeps per agent)."""
    return [(t, m) for t, m in samples if now - t <= window]
