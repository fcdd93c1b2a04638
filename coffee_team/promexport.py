"""The team as Prometheus metrics: the web program's ``/metrics`` and
``coffee-team metrics --prometheus`` (node_exporter's textfile collector) render the same text.

Inputs are what the dashboard already reads (``coffee.getTeamStatus``, ``stats()``,
notification counts) plus task durations from the ``metrics`` table, folded into a histogram
incrementally so that a scrape reads only the rows that are new since the previous one.
Names follow the Prometheus conventions: base units (seconds, bytes), ``_total`` on counters.
"""
from __future__ import annotations

import bisect
from typing import Any, Iterable

from .taskstate import STATES

# Task durations span milliseconds (demo handlers) to an hour (an LLM agent's long task).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 900.0, 3600.0)
# Today's LLM spend (status.queue_columns): gauges, since they go back to 0 at UTC midnight.
# Metric name, status key, help.
SPEND_GAUGES = (("coffee_agent_cost_today_dollars", "cost_today_usd",
                 "LLM cost of the agent's CLI runs today (UTC)"),
                ("coffee_agent_tokens_today", "tokens_today",
                 "LLM tokens the agent's CLI runs used today (UTC)"))


class DurationHistogram:
    """Task durations by (agent, type), fed with ``task_durations_after`` rows in id order.

    Rendered by hand, one cached text chunk per series: agents × types × buckets is the
    largest part of a scrape (about 14,000 lines at 100 agents with 7 types each), and only
    the series that moved since the last scrape are formatted again.
    """

    NAME = "coffee_task_duration_seconds"
    HEADER = (f"# HELP {NAME} Time from claim to completion of finished tasks\n"
              f"# TYPE {NAME} histogram\n")

    def __init__(self) -> None:
        self.last_id = 0
        self._series: dict[tuple[str, str], list] = {}  # key → [bucket counts, sum, count]
        self._text: dict[tuple[str, str], str] = {}     # key → its lines, while unchanged

    def feed(self, rows: Iterable[tuple]) -> int:
        """Add (id, agent, task_type, duration_ms) rows; returns how many were new."""
        added = 0
        for metric_id, agent, task_type, duration_ms in rows:
            seconds = max(0.0, float(duration_ms)) / 1000.0
            key = (agent, task_type)
            series = self._series.setdefault(key, [[0] * len(DURATION_BUCKETS), 0.0, 0])
            index = bisect.bisect_left(DURATION_BUCKETS, seconds)
            if index < len(DURATION_BUCKETS):
                series[0][index] += 1
            series[1] += seconds
            series[2] += 1
            self._text.pop(key, None)
            self.last_id = max(self.last_id, metric_id)
            added += 1
        return added

    def catch_up(self, queue: Any, batch: int = 10_000) -> None:
        """Read every metrics row after the last one seen (all of them on the first call)."""
        while self.feed(queue.task_durations_after(self.last_id, batch)) == batch:
            pass

    def text(self) -> str:
        chunks = [self.HEADER]
        for key in sorted(self._series):
            if key not in self._text:
                self._text[key] = self._format(key, *self._series[key])
            chunks.append(self._text[key])
        return "".join(chunks)

    def _format(self, key: tuple[str, str], counts: list[int], total: float, count: int) -> str:
        labels = f'agent="{_escape(key[0])}",type="{_escape(key[1])}"'
        lines, cumulative = [], 0
        for bound, n in zip(DURATION_BUCKETS, counts):
            cumulative += n
            lines.append(f'{self.NAME}_bucket{{{labels},le="{float(bound)!r}"}} {cumulative}\n')
        lines.append(f'{self.NAME}_bucket{{{labels},le="+Inf"}} {count}\n')
        lines.append(f"{self.NAME}_count{{{labels}}} {count}\n")
        lines.append(f"{self.NAME}_sum{{{labels}}} {total!r}\n")
        return "".join(lines)


def _escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def agent_families(status: dict | None) -> list:
    """Per-agent gauges and counters from ``coffee.getTeamStatus`` (None: supervisord down)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name: str, doc: str):
        return GaugeMetricFamily(name, doc, labels=("agent",))

    up = GaugeMetricFamily("coffee_supervisord_up", "1 if supervisord answered the scrape")
    up.add_metric((), 0 if status is None else 1)
    if status is None:
        return [up]
    families = {
        "up": gauge("coffee_agent_up", "1 if the agent's process is RUNNING"),
        "paused": gauge("coffee_agent_paused", "1 if the agent claims no new tasks"),
        "given_up": gauge("coffee_agent_given_up", "1 if the watchdog gave up restarting it"),
        "uptime": gauge("coffee_agent_uptime_seconds", "Seconds since the process started"),
        "heartbeat": gauge("coffee_agent_heartbeat_age_seconds", "Seconds since its heartbeat"),
        "cpu": gauge("coffee_agent_cpu_percent", "CPU of its process tree, % of one core"),
        "rss": gauge("coffee_agent_rss_bytes", "Resident memory of its process tree"),
    }
    restarts = CounterMetricFamily("coffee_agent_restarts", "Crash restarts in the crash window",
                                   labels=("agent",))
    spend = {key: gauge(name, doc) for name, key, doc in SPEND_GAUGES}
    for agent in status["agents"]:
        label = (agent["name"],)
        families["up"].add_metric(label, 1 if agent["state"] == "RUNNING" else 0)
        families["paused"].add_metric(label, 1 if agent.get("paused") else 0)
        families["given_up"].add_metric(label, 1 if agent.get("given_up") else 0)
        families["uptime"].add_metric(label, agent.get("uptime_seconds") or 0)
        if agent.get("heartbeat_age_seconds") is not None:
            families["heartbeat"].add_metric(label, agent["heartbeat_age_seconds"])
        families["cpu"].add_metric(label, agent.get("cpu_percent") or 0)
        families["rss"].add_metric(label, round((agent.get("rss_mb") or 0) * 2**20))
        restarts.add_metric(label, agent.get("restarts") or 0)
        for key, family in spend.items():
            if agent.get(key) is not None:  # absent while the database cannot be read
                family.add_metric(label, agent[key])
    return [up, *families.values(), restarts, *(f for f in spend.values() if f.samples)]


def queue_families(counts: dict[str, dict], notifications: dict[str, int]) -> list:
    """``coffee_tasks{agent,status}``, the oldest waiting task, notifications by level."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    tasks = GaugeMetricFamily("coffee_tasks", "Tasks in the queue by recipient and status",
                              labels=("agent", "status"))
    oldest = GaugeMetricFamily("coffee_task_oldest_pending_age_seconds",
                               "Age of the oldest pending task", labels=("agent",))
    for agent, row in sorted(counts.items()):
        for status in STATES:
            tasks.add_metric((agent, status), row.get(status, 0))
        if row.get("oldest_pending_age_s") is not None:
            oldest.add_metric((agent,), row["oldest_pending_age_s"])
    raised = CounterMetricFamily("coffee_notifications", "Notifications raised, by level",
                                 labels=("level",))
    for level, count in sorted(notifications.items()):
        raised.add_metric((level,), count)
    return [tasks, oldest, raised]


class _Families:
    """A one-off prometheus_client collector over families already built."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return iter(self.families)


def exposition(families: list) -> bytes:
    """The text format (version 0.0.4) of ``families``."""
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def render(status: dict | None, queue: Any, names: Iterable[str],
           histogram: DurationHistogram | None = None) -> bytes:
    """Everything, in one exposition: status from supervisord, the rest from the queue;
    every agent in ``names`` has its task series, zero when it never had a task."""
    histogram = histogram or DurationHistogram()
    histogram.catch_up(queue)
    counts = {name: {} for name in names}
    counts.update(queue.stats())
    text = exposition([*agent_families(status),
                       *queue_families(counts, queue.notification_counts())])
    return text + histogram.text().encode()
