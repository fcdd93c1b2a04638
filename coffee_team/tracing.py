"""The team's timeline as trace files (pure: rows in, JSON-able dicts out).

``chrome_trace`` writes Chrome trace-event JSON (opens in Perfetto or chrome://tracing): one
track per agent with its lifetimes (RUNNING → exit) and tasks (claimed → finished) as complete
events, crashes, restarts and give-ups as instant events. ``seed_trace`` writes the seed's
trace events (agent_launched, health_check, agent_restart, message_sent, message_received,
task_completed).
"""
from __future__ import annotations

from typing import Any, Iterable

from . import events as kinds

US = 1_000_000


def _us(ts: float) -> int:
    return int(ts * US)


def chrome_trace(events: Iterable[dict], tasks: Iterable[dict]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    tids: dict[str, int] = {}

    def tid(agent: str | None) -> int:
        name = agent or "team"
        if name not in tids:
            tids[name] = len(tids) + 1
            out.append({"ph": "M", "name": "thread_name", "pid": 1, "tid": tids[name],
                        "args": {"name": name}})
        return tids[name]

    running_since: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e["id"]):
        agent, kind = e["agent"], e["kind"]
        if kind == kinds.RUNNING:
            running_since[agent] = e["ts"]
        elif kind in kinds.LIFETIME_ENDS and agent in running_since:
            start = running_since.pop(agent)
            out.append({"ph": "X", "cat": "lifetime", "name": f"{agent} RUNNING", "pid": 1,
                        "tid": tid(agent), "ts": _us(start), "dur": _us(e["ts"] - start),
                        "args": {"ended_by": kind, **e["detail"]}})
        if kind in kinds.INSTANTS:
            out.append({"ph": "i", "s": "t", "cat": "lifecycle", "name": kind, "pid": 1,
                        "tid": tid(agent), "ts": _us(e["ts"]), "args": e["detail"]})
    for t in tasks:
        start, end = t.get("claimed_at"), t.get("completed_at")
        if not start or not end or not t.get("claimed_by"):
            continue
        out.append({"ph": "X", "cat": "task", "name": t["type"], "pid": 2,
                    "tid": tid(t["claimed_by"]), "ts": _us(start), "dur": _us(end - start),
                    "args": {"id": t["id"], "sender": t["sender"], "status": t["status"],
                             "waited_ms": round((start - t["created_at"]) * 1000, 1)}})
    out.append({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "agents"}})
    out.append({"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "tasks"}})
    return {"traceEvents": out, "displayTimeUnit": "ms"}


SEED_KINDS = {kinds.LAUNCHED: "agent_launched", kinds.RESTARTED: "agent_restart",
              kinds.STALE: "health_check", kinds.MISSING: "health_check",
              kinds.HUNG: "health_check"}


def seed_trace(events: Iterable[dict], tasks: Iterable[dict]) -> dict[str, Any]:
    rows: list[tuple[float, dict[str, Any]]] = []
    for e in events:
        kind = SEED_KINDS.get(e["kind"])
        if kind is None:
            continue
        row = {"event_type": kind, "agent": e["agent"], "timestamp": e["ts"], **e["detail"]}
        if kind == "health_check":
            row["status"] = e["kind"]
        rows.append((e["ts"], row))
    for t in tasks:
        rows.append((t["created_at"], {"event_type": "message_sent", "from_agent": t["sender"],
                                       "to_agent": t["recipient"], "task_type": t["type"],
                                       "task_id": t["id"], "timestamp": t["created_at"]}))
        if t.get("claimed_at"):
            rows.append((t["claimed_at"], {"event_type": "message_received",
                                           "agent": t["recipient"], "task_id": t["id"],
                                           "timestamp": t["claimed_at"]}))
        if t.get("completed_at") and t["status"] in ("completed", "failed"):
            rows.append((t["completed_at"], {
                "event_type": "task_completed", "agent": t["recipient"], "task_id": t["id"],
                "outcome": "success" if t["status"] == "completed" else "failure",
                "duration_ms": round((t["completed_at"] - (t.get("claimed_at") or
                                                           t["created_at"])) * 1000, 1),
                "timestamp": t["completed_at"]}))
    rows.sort(key=lambda r: r[0])
    events_out = [r for _, r in rows]
    metrics = {"agents_launched": sum(1 for r in events_out if r["event_type"] == "agent_launched"),
               "agent_restarts": sum(1 for r in events_out if r["event_type"] == "agent_restart"),
               "messages_sent": sum(1 for r in events_out if r["event_type"] == "message_sent")}
    return {"agent": "orchestrator", "events": events_out, "metrics": metrics}


def timeline(events: Iterable[dict], running_since: dict[str, float], since: float,
             now: float) -> dict[str, Any]:
    """The dashboard's last-hour view of ``chrome_trace``'s lifetimes and instants.

    ``events`` are the journal rows of the window, any order; ``running_since`` maps each agent
    RUNNING now to its start (from the status), so a lifetime that began before the window, or
    whose start event is gone, still shows. Spans are clipped to [since, now]; an open one has
    ``end`` None.
    """
    spans: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    open_since: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e["id"]):
        agent, kind, ts = e["agent"], e["kind"], e["ts"]
        if ts < since or agent is None:
            continue
        if kind == kinds.RUNNING:
            open_since[agent] = ts
        elif kind in kinds.LIFETIME_ENDS:
            # an end without its start in the window: it ran since before the window
            spans.append({"agent": agent, "start": open_since.pop(agent, since), "end": ts,
                          "ended_by": kind})
        if kind in kinds.INSTANTS:
            points.append({"agent": agent, "ts": ts, "kind": kind})
    for agent, started in running_since.items():
        spans.append({"agent": agent, "start": max(since, open_since.pop(agent, started)),
                      "end": None, "ended_by": None})
    return {"since": since, "now": now, "spans": spans, "points": points}
