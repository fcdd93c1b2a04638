"""What the dashboard shows, gathered in one call: ``coffee.getTeamStatus`` from supervisord
over its unix socket (process state, CPU, RSS, heartbeats, restarts, pauses) joined with reads
of the queue database (counts per agent, latest tasks, notifications, the last hour's events).

Every read is an index walk or a LIMIT, so one call stays fast with 100 agents and 100,000
tasks; the last hour's events are kept here and extended with only the new rows each time.
Several open pages share one result for ``ttl`` seconds, so supervisord answers at most one
status call per ``ttl`` however many people watch, and none while nobody does.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .. import client, status, tracing
from ..errors import SupervisorDown, error_line
from ..events import lifecycle_summary
from ..team import Team

WINDOW = 3600.0           # the timeline's span, seconds
LATEST_TASKS = 30
LATEST_NOTIFICATIONS = 30
WAITING_APPROVALS = 30
LATEST_MERGES = 20
EVENT_BATCH = 1000
FIRST_EVENTS = 5000       # read once at start: more than an hour of a busy team's journal
QUEUE_KEYS = ("pending", "in_progress", "failed", "oldest_pending_age_s")


def status_endpoint(team: Team) -> client.Endpoint:
    """supervisord's own socket, whatever SUPERVISOR_SERVER_URL says (the environment of
    whoever started supervisord may name another server)."""
    return client.Endpoint("unix://" + str(team.run_dir / "supervisor.sock"))


def display_state(agent: dict[str, Any], now: float) -> tuple[str, str]:
    """(label, detail) for the state column: a pending watchdog restart is BACKOFF "restart in
    40s", a give-up GIVEN UP, a paused agent PAUSED, an exit nobody asked for CRASHED."""
    state = agent.get("state", "UNKNOWN")
    if agent.get("given_up"):
        return "GIVEN UP", "restart it by hand"
    if agent.get("next_restart_at"):
        wait = max(0.0, agent["next_restart_at"] - now)
        return "BACKOFF", f"crashed, restart in {wait:.0f}s"
    if state == "RUNNING" and agent.get("paused"):
        return "PAUSED", agent.get("paused_reason") or ""
    if state == "EXITED":
        return "CRASHED", agent.get("description", "")
    return state, ""


def current_work(agent: dict[str, Any], now: float) -> str:
    """"#42 spec_created for 1m 3s"; the runtime's own ``activity`` text wins when it has one."""
    if agent.get("activity"):
        return str(agent["activity"])
    task = agent.get("current_task")
    if not isinstance(task, dict) or not task.get("id"):
        return ""
    from ..status import human_duration
    since = task.get("started_at")
    took = f" for {human_duration(max(0.0, now - since))}" if since else ""
    return f"#{task['id']} {task.get('type', '')}{took}"


NO_LIFECYCLE = {"crashes": 0, "restarts": 0, "manual_restarts": 0, "given_up": False,
                "last_crash": None}


def agent_row(agent: dict[str, Any], queue: dict[str, Any], now: float,
              hour: dict[str, Any] | None = None) -> dict[str, Any]:
    """One agent's row. ``restarts`` stays the watchdog's count toward give-up (a person's
    restart clears it); ``hour`` is what the journal holds of the last hour (crashes,
    restarts by the watchdog and by hand), which no restart resets."""
    label, detail = display_state(agent, now)
    return {**agent, "display_state": label, "state_detail": detail,
            "working_on": current_work(agent, now), "cost_today": agent.get("cost_today_usd"),
            "last_hour": {k: (hour or NO_LIFECYCLE)[k] for k in
                          ("crashes", "restarts", "manual_restarts")},
            "queue": {key: queue.get(key, 0 if key != "oldest_pending_age_s" else None)
                      for key in QUEUE_KEYS}}


def offline_agents(team: Team) -> list[dict[str, Any]]:
    """Rows for a team whose supervisord does not answer (the page still shows the queue)."""
    return [{"name": spec.name, "state": "UNKNOWN", "pid": 0, "priority": spec.priority,
             "uptime_seconds": 0, "cpu_percent": 0.0, "rss_mb": 0.0, "restarts": 0}
            for spec in sorted(team.agents, key=lambda a: (a.priority, a.name))]


class EventWindow:
    """The journal's last hour, read once and then extended by id."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.last_id: int | None = None

    def refresh(self, queue: Any, now: float) -> list[dict]:
        if self.last_id is None:
            self.events = list(reversed(queue.newest_events(FIRST_EVENTS)))
        else:
            while True:
                batch = queue.events(since_id=self.last_id, limit=EVENT_BATCH)
                self.events += batch
                self.last_id = batch[-1]["id"] if batch else self.last_id
                if len(batch) < EVENT_BATCH:
                    break
        if self.events:
            self.last_id = self.events[-1]["id"]
        elif self.last_id is None:
            self.last_id = 0
        self.events = [e for e in self.events if e["ts"] >= now - WINDOW]
        return self.events


class Snapshots:
    """The dashboard's data (``dashboard()``) and the pieces /metrics needs (``status()``)."""

    def __init__(self, team: Team, queue: Any, ttl: float = 0.5,
                 clock: Callable[[], float] = time.time,
                 fetch_status: Callable[[], dict] | None = None):
        self.team = team
        self.queue = queue
        self.ttl = ttl
        self.clock = clock
        self.endpoint = status_endpoint(team)
        self.fetch_status = fetch_status or self._rpc_status
        # Every database read runs on this one thread: the queue keeps a connection per thread,
        # and the server's threads come and go with requests.
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="coffee-web-db")
        self.window = EventWindow()
        self._cached: tuple[float, dict] | None = None
        self._status: tuple[float, tuple[dict | None, str]] | None = None

    def use_team(self, team: Team) -> None:
        """A team file applied while the program runs (SIGHUP): its agents from now on."""
        def adopt() -> None:
            self.queue.adopt_team(team)
            self.team = team
            self._cached = self._status = None
        self.run(adopt)

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the database thread, one call at a time."""
        return self._db_thread.submit(function, *args).result()

    def _rpc_status(self) -> dict:
        """What ``coffee.getTeamStatus`` returns, built here from supervisor's process table:
        the /proc reads stay out of supervisord's single thread, and its reply is the small
        process table instead of the full status of every agent."""
        answers = client.call(self.endpoint, "system.multicall", [
            {"methodName": "supervisor.getAllProcessInfo", "params": []},
            {"methodName": "supervisor.getPID", "params": []}], timeout=5)
        for answer in answers:  # supervisor's multicall: each value as is, or a fault struct
            if isinstance(answer, dict):
                raise SupervisorDown(f"supervisord: {answer.get('faultString', answer)}")
        infos, pid = answers
        return status.with_database(self.team, infos, pid,
                                    lambda: status.queue_columns(self.queue, self.team),
                                    now=self.clock())

    def status(self) -> tuple[dict | None, str]:
        """(getTeamStatus or None, why not); on the database thread."""
        try:
            return self.fetch_status(), ""
        except SupervisorDown as exc:
            return None, str(exc)
        except Exception as exc:  # a fault (coffee.* unavailable): show it, keep serving
            return None, f"supervisord: {error_line(exc)}"

    def shared_status(self) -> tuple[dict | None, str]:
        """``status()``, shared by the page and /metrics for ``ttl`` seconds: with both in use
        supervisord and /proc are read once per ``ttl``, not once per reader."""
        now = self.clock()
        if self._status is not None and now - self._status[0] < self.ttl:
            return self._status[1]
        answer = self.status()
        self._status = (now, answer)
        return answer

    def dashboard(self) -> dict[str, Any]:
        return self.run(self._dashboard)

    def _dashboard(self) -> dict[str, Any]:
        now = self.clock()
        if self._cached is not None and now - self._cached[0] < self.ttl:
            return self._cached[1]
        data = self._build(now)
        self._cached = (now, data)
        return data

    def invalidate(self) -> None:
        """After an action: the next poll shows its effect instead of a cached page."""
        self._cached = self._status = None

    def _build(self, now: float) -> dict[str, Any]:
        status, error = self.shared_status()
        agents = status["agents"] if status else offline_agents(self.team)
        counts = self.queue.stats()
        events = self.window.refresh(self.queue, now)
        hour = lifecycle_summary(events)
        rows = [agent_row(a, counts.get(a["name"], {}), now, hour.get(a["name"]))
                for a in agents]
        running = {a["name"]: now - a["uptime_seconds"] for a in agents
                   if a["state"] == "RUNNING" and a.get("uptime_seconds")}
        return {
            "now": now, "error": error,
            "team": {k: (status or {}).get(k) for k in
                     ("uptime_seconds", "agents_running", "agents_total", "supervisord_pid")},
            "agents": rows,
            "tasks": [task_summary(t) for t in self.queue.list_tasks(limit=LATEST_TASKS)],
            "notifications": self.queue.newest_notifications(LATEST_NOTIFICATIONS),
            "approvals": [approval_summary(a)
                          for a in self.queue.list_approvals("pending", WAITING_APPROVALS,
                                                             expire=False)],
            "merges": [merge_summary(m) for m in self.queue.merge_items(limit=LATEST_MERGES)],
            "timeline": tracing.timeline(events, running, now - WINDOW, now),
        }

    def task(self, task_id: int) -> dict:
        return self.run(self.queue.get_task, task_id)

    def task_page(self, status: str | None, agent: str | None, before: int | None,
                  limit: int) -> dict[str, Any]:
        """Tasks newest first by status and recipient, ``limit`` per page after id
        ``before``; ``next_before`` continues with the next page (None: this is the last)."""
        rows = self.run(lambda: self.queue.list_tasks(status=status, agent=agent,
                                                      limit=limit + 1, before_id=before))
        page = [task_summary(t) for t in rows[:limit]]
        return {"tasks": page, "next_before": page[-1]["id"] if len(rows) > limit else None}

    def close(self) -> None:
        self.run(self.queue.close)
        self._db_thread.shutdown()


def approval_summary(row: dict) -> dict:
    """A request waiting for a person, for the page: what it asks, in one line and in full."""
    import json
    keep = ("id", "kind", "agent", "task_id", "subject", "created_at", "expires_at",
            "on_timeout")
    summary = {key: row.get(key) for key in keep}
    summary["detail"] = json.dumps(row.get("request", {}).get("input", row.get("request")),
                                   ensure_ascii=False)[:2000]
    return summary


def merge_summary(item: dict) -> dict:
    """A merge item for the list: everything but its checks' output (``merges show``)."""
    return {key: value for key, value in item.items() if key != "output"}


def task_summary(task: dict) -> dict:
    """A task row for the list: no content or result (the detail view fetches those)."""
    keep = ("id", "sender", "recipient", "type", "priority", "status", "attempts",
            "created_at", "claimed_at", "completed_at", "claimed_by")
    row = {key: task.get(key) for key in keep}
    row["error"] = (task.get("error") or "")[:200]
    return row
