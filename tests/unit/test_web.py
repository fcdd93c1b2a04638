"""The web program without supervisord: a real server on a free port over a real SQLite queue,
with ``coffee.getTeamStatus`` and the action calls replaced by fakes; the team file's ``web:``
block and the ``[program:web]`` it generates; the pure pieces (state labels, timeline)."""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
import xmlrpc.client

import pytest

from coffee_team import confgen, tracing
from coffee_team.errors import SupervisorDown, TeamError
from coffee_team.queue import MessageQueue
from coffee_team.team import parse_team
from coffee_team.dashboard import actions, server
from coffee_team.dashboard.snapshot import Snapshots, display_state

WEB = {"port": 8099, "username": "ops", "password_env": "CT_WEB_PASSWORD"}
AGENTS = ("architect", "code_developer")


def status_of(*rows: dict) -> dict:
    return {"uptime_seconds": 5.0, "agents_running": 1, "agents_total": len(rows),
            "supervisord_pid": 1, "agents": list(rows)}


def agent(name: str, state: str = "RUNNING", **extra) -> dict:
    return {"name": name, "state": state, "pid": 10, "priority": 1, "uptime_seconds": 3.0,
            "cpu_percent": 1.5, "rss_mb": 20.0, "restarts": 0, "given_up": False,
            "paused": False, **extra}


@pytest.fixture
def web(tmp_path):
    """A running web server; yields (base url, queue, calls made to supervisord)."""
    team = parse_team({"team": {"web": WEB}, "agents": {a: {} for a in AGENTS}},
                      str(tmp_path / "data" / "team.yaml"), tmp_path / "data" / "team.yaml")
    queue = MessageQueue(str(tmp_path / "q.db"), agents=AGENTS)
    status = status_of(agent("architect"), agent("code_developer", "EXITED",
                                                 next_restart_at=10**10))
    snapshots = Snapshots(team, queue, ttl=0, fetch_status=lambda: status)
    app = server.Dashboard(team, snapshots, "ops", "s3cret")
    calls = []

    def call(method, *args):
        calls.append((method, *args))
        if method == "coffee.retryTask":
            raise xmlrpc.client.Fault(30, "FAILED: task 1 is pending; only failed or "
                                          "cancelled tasks can be retried")
        if method == "coffee.decideApproval":
            if args[0] == 8:
                raise xmlrpc.client.Fault(30, "FAILED: approval 8 was already approved by bob")
            return {"status": "denied" if args[1] == "deny" else "approved", "agent": "architect",
                    "subject": "Bash: git push"}
        return "pending" if method == "coffee.cancelTask" else True

    app.call = call
    log = "line one\n<script>alert(1)</script>\n"

    def fake_tail(name, offset, length):
        def call(method, name, offset, length):
            calls.append((method, name, offset, length))
            if name == "code_developer":
                raise xmlrpc.client.Fault(20, "NO_FILE: /x/code_developer.log")
            data = log.encode()
            start = max(0, len(data) - length) if offset == 0 else min(offset, len(data))
            return data[start:].decode(), len(data), False
        return actions.read_log(name, offset, length, team.names, call)

    app.tail_log = fake_tail
    httpd = server.make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", queue, calls, app
    finally:
        httpd.shutdown()
        httpd.server_close()
        snapshots.close()


def request(url: str, method: str = "GET", password: str | None = "s3cret",
            headers: dict | None = None, data: bytes = b"") -> tuple[int, bytes, dict]:
    headers = dict(headers or {})
    if password is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=data if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def post(base: str, path: str, app, body: bytes = b"", **headers) -> tuple[int, dict]:
    headers = {server.CSRF_HEADER: app.csrf_token, **headers}
    code, answer, _ = request(base + path, "POST", headers=headers, data=body)
    return code, json.loads(answer)


def test_every_path_needs_the_password(web):
    base, *_ = web
    for path in ("/", "/api/dashboard", "/metrics", "/api/tasks/1"):
        for password in (None, "wrong"):
            code, _, headers = request(base + path, password=password)
            assert code == 401, path
            assert headers["WWW-Authenticate"].startswith("Basic")
    code, body, headers = request(base + "/")
    assert code == 200 and b"coffee-team" in body
    assert headers["X-Frame-Options"] == "DENY"


def test_dashboard_joins_status_and_queue(web):
    base, queue, _, _ = web
    queue.send("cli", "code_developer", "spec_created", {"spec_id": "S-1"})
    code, body, _ = request(base + "/api/dashboard")
    data = json.loads(body)
    rows = {a["name"]: a for a in data["agents"]}
    assert code == 200 and data["error"] == ""
    assert rows["architect"]["display_state"] == "RUNNING"
    assert rows["code_developer"]["display_state"] == "BACKOFF"
    assert rows["code_developer"]["state_detail"].startswith("crashed, restart in")
    assert rows["code_developer"]["queue"]["pending"] == 1
    assert rows["code_developer"]["queue"]["oldest_pending_age_s"] >= 0
    assert [t["type"] for t in data["tasks"]] == ["spec_created"]
    assert {s["agent"] for s in data["timeline"]["spans"]} == {"architect"}


def test_task_detail_and_unknown_ids_are_one_line_404s(web):
    base, queue, _, _ = web
    task_id = queue.send("cli", "architect", "design_request", {"text": "x"})
    code, body, _ = request(f"{base}/api/tasks/{task_id}")
    assert code == 200 and json.loads(body)["content"] == {"text": "x"}
    for path in ("/api/tasks/424242", "/api/tasks/abc", "/api/agents/nobody", "/nowhere"):
        code, body, _ = request(base + path)
        assert code == 404 and "\n" not in json.loads(body)["error"], path


def test_actions_answer_with_a_clear_message(web):
    base, _, calls, app = web
    assert post(base, "/api/agents/architect/restart", app) == (
        200, {"message": "architect: restart requested (stopping if needed, then starting)"})
    assert post(base, "/api/tasks/7/cancel", app) == (
        200, {"message": "task 7 cancelled (it was pending)"})
    code, body = post(base, "/api/tasks/7/retry", app)
    assert code == 409 and body["error"].startswith("task 1 is pending")
    assert post(base, "/api/agents/nobody/pause", app)[0] == 404
    assert post(base, "/api/agents/architect/explode", app)[0] == 404
    assert calls == [("coffee.restartAgent", "architect"), ("coffee.cancelTask", 7),
                     ("coffee.retryTask", 7)]


def test_a_decision_is_the_signed_in_persons_with_the_reason_they_typed(web):
    base, queue, calls, app = web
    assert post(base, "/api/approvals/7/deny", app, json.dumps({"reason": "not prod"}).encode()
                ) == (200, {"message": "approval 7 denied: architect Bash: git push"})
    assert post(base, "/api/approvals/7/approve", app)[0] == 200
    code, body = post(base, "/api/approvals/8/approve", app)
    assert code == 409 and body["error"].startswith("approval 8 was already approved by bob")
    assert post(base, "/api/approvals/x/approve", app)[0] == 404
    assert post(base, "/api/approvals/7/explode", app)[0] == 404
    assert post(base, "/api/approvals/7/deny", app, b"{not json")[0] == 200  # no reason, still
    assert calls == [("coffee.decideApproval", 7, "deny", "ops", "not prod"),
                     ("coffee.decideApproval", 7, "approve", "ops", ""),
                     ("coffee.decideApproval", 8, "approve", "ops", ""),
                     ("coffee.decideApproval", 7, "deny", "ops", "")]
    calls.clear()
    code, body = post(base, "/api/approvals/7/approve", app, **{server.CSRF_HEADER: "forged"})
    assert code == 403 and calls == []  # CSRF-protected like every action


def test_the_dashboard_lists_what_waits_for_a_person(web):
    base, queue, _, _ = web
    asked = queue.request_approval("tool", "architect", "Bash: git push origin main",
                                   {"tool_name": "Bash", "input": {"command": "git push"}},
                                   task_id=3, timeout=600)
    queue.decide_approval(queue.request_approval("tool", "architect", "Write x"), True, "ana")
    data = json.loads(request(base + "/api/dashboard")[1])
    [row] = data["approvals"]
    assert (row["id"], row["agent"], row["task_id"], row["subject"]) == (
        asked, "architect", 3, "Bash: git push origin main")
    assert json.loads(row["detail"]) == {"command": "git push"}


@pytest.mark.parametrize("headers", [
    {server.CSRF_HEADER: ""},
    {server.CSRF_HEADER: "forged"},
    {"Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_cross_site_actions_are_refused(web, headers):
    base, _, calls, app = web
    code, body = post(base, "/api/agents/architect/restart", app, **headers)
    assert code == 403 and body["error"].startswith("refused")
    assert calls == []


def test_an_agents_log_reads_its_end_then_what_was_added(web):
    base, _, calls, app = web
    csrf = {server.CSRF_HEADER: app.csrf_token}
    code, body, _ = request(base + "/api/agents/architect/log", headers=csrf)
    first = json.loads(body)
    assert code == 200 and first["text"].startswith("line one") and first["overflow"] is False
    assert calls[-1] == ("supervisor.tailProcessStdoutLog", "architect", 0, actions.LOG_FIRST)
    code, body, _ = request(f"{base}/api/agents/architect/log?offset={first['offset']}"
                            f"&length=999999999", headers=csrf)
    assert code == 200 and json.loads(body)["text"] == ""  # nothing new since
    assert calls[-1][3] == actions.LOG_MAX  # a read is bounded whatever is asked
    assert request(base + "/api/agents/nobody/log", headers=csrf)[0] == 404
    code, body, _ = request(base + "/api/agents/code_developer/log", headers=csrf)
    assert code == 404 and "cannot read the log" in json.loads(body)["error"]
    assert request(base + "/api/agents/architect/log?offset=-1", headers=csrf)[0] == 400


@pytest.mark.parametrize("headers", [{}, {server.CSRF_HEADER: "forged"},
                                     {"Sec-Fetch-Site": "cross-site"}])
def test_reading_a_log_needs_the_csrf_token_like_an_action(web, headers):
    base, _, calls, app = web
    code, body, _ = request(base + "/api/agents/architect/log", headers=headers)
    assert code == 403 and json.loads(body)["error"].startswith("refused")
    assert calls == []
    assert request(base + "/api/agents/architect/log", password=None)[0] == 401


def test_tasks_are_listed_by_status_and_paged_past_the_latest(web):
    base, queue, _, _ = web
    failed = []
    for i in range(45):
        task_id = queue.send("cli", AGENTS[i % 2], "job", {"i": i})
        if i % 3 == 0:
            (task,) = queue.claim(AGENTS[i % 2])
            queue.mark_failed(task.id, f"boom {i}")
            failed.append(task.id)
    failed.reverse()  # newest first
    seen, before = [], ""
    while True:
        code, body, _ = request(f"{base}/api/tasks?status=failed&limit=4{before}")
        page = json.loads(body)
        assert code == 200 and all(t["status"] == "failed" for t in page["tasks"])
        seen += [t["id"] for t in page["tasks"]]
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert seen == failed and len(seen) == 15
    code, body, _ = request(f"{base}/api/tasks?status=failed&agent=architect")
    assert [t["id"] for t in json.loads(body)["tasks"]] == [
        t for t in failed if queue.get_task(t)["recipient"] == "architect"]
    assert json.loads(body)["tasks"][0]["error"].startswith("boom")
    for bad in ("status=lost", "before=x", "limit=0", "limit=201"):
        code, body, _ = request(f"{base}/api/tasks?{bad}")
        assert code == 400 and "\n" not in json.loads(body)["error"], bad


def test_the_dashboard_follows_an_applied_team(tmp_path):
    """SIGHUP reloads the team file (main.reload_team): added agents get rows and actions."""
    from coffee_team.web import main
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True)
    doc = {"team": {"web": WEB}, "agents": {"architect": {}}}
    path.write_text(json.dumps(doc))
    team = parse_team(doc, str(path), path)
    queue = MessageQueue(str(tmp_path / "q.db"), agents=team.names)
    snapshots = Snapshots(team, queue, ttl=0, fetch_status=lambda: None)
    app = server.Dashboard(team, snapshots, "ops", "s3cret")
    try:
        assert [a["name"] for a in snapshots.dashboard()["agents"]] == ["architect"]
        doc["agents"]["reviewer"] = {}
        path.write_text(json.dumps(doc))
        main.reload_team(app, str(path))
        assert [a["name"] for a in snapshots.dashboard()["agents"]] == ["architect", "reviewer"]
        assert app.team.names == ("architect", "reviewer")
        queue.send("cli", "reviewer", "review", {})  # the queue routes to it as well
        path.write_text("agents: [")  # a file that does not load changes nothing
        main.reload_team(app, str(path))
        assert app.team.names == ("architect", "reviewer")
    finally:
        snapshots.close()


def test_crashes_are_counted_from_the_journal_not_reset_by_a_manual_restart(tmp_path):
    """Finding 8: after `restart`, the watchdog's attempt count is 0 (a person cleared it),
    but the crashes it recorded still show."""
    team = parse_team({"agents": {"a": {}}}, "t", tmp_path / "data" / "team.yaml")
    queue = MessageQueue(str(tmp_path / "q.db"), agents=("a",))
    for kind in ("crash", "restarted", "crash", "manual_restart"):
        queue.record_event("a", kind, reason="exit 1")
    status = status_of(agent("a", restarts=0))  # restart_state cleared by the restart
    snapshots = Snapshots(team, queue, ttl=0, fetch_status=lambda: status)
    try:
        (row,) = snapshots.dashboard()["agents"]
    finally:
        snapshots.close()
    assert row["restarts"] == 0
    assert row["last_hour"] == {"crashes": 2, "restarts": 1, "manual_restarts": 1}


def test_actions_are_post_only(web):
    base, _, calls, _ = web
    assert request(base + "/api/agents/architect/restart")[0] == 404
    assert calls == []


def test_supervisord_down_is_a_banner_not_an_error(tmp_path):
    team = parse_team({"agents": {"a": {}}}, "t", tmp_path / "data" / "team.yaml")
    queue = MessageQueue(str(tmp_path / "q.db"), agents=("a",))

    def down():
        raise SupervisorDown("supervisord is not running")
    snapshots = Snapshots(team, queue, fetch_status=down)
    try:
        data = snapshots.dashboard()
    finally:
        snapshots.close()
    assert data["error"] == "supervisord is not running"
    assert [a["state"] for a in data["agents"]] == ["UNKNOWN"]


def test_the_dashboard_lists_the_merge_queue_without_its_output(tmp_path):
    team = parse_team({"agents": {"a": {}, "b": {}}}, "t", tmp_path / "data" / "team.yaml")
    queue = MessageQueue(str(tmp_path / "q.db"), agents=("a", "b"))
    queue.send("cli", "a", "work")
    [task] = queue.claim("a")
    _, item_id = queue.request_review(task.id, None, agent="a", item={
        "author": "a", "host": "", "branch": "agents/a", "target": "roadmap", "base": "1" * 40,
        "head": "2" * 40, "task_id": task.id, "reviewer": "b"}, review=None)
    queue.decide_review(item_id, True, by="b")
    queue.begin_merge("")
    queue.finish_merge(item_id, "fail", reason="check failed: make: exit 2", output="x" * 5000)
    snapshots = Snapshots(team, queue, fetch_status=lambda: {"agents": []})
    try:
        [row] = snapshots.dashboard()["merges"]
    finally:
        snapshots.close()
    assert (row["id"], row["state"], row["reason"]) == (item_id, "failed",
                                                         "check failed: make: exit 2")
    assert "output" not in row


@pytest.mark.parametrize("row, label", [
    (agent("a"), "RUNNING"),
    (agent("a", paused=True), "PAUSED"),
    (agent("a", "EXITED", given_up=True), "GIVEN UP"),
    (agent("a", "EXITED", next_restart_at=140.0), "BACKOFF"),
    (agent("a", "EXITED"), "CRASHED"),
    (agent("a", "STOPPED"), "STOPPED"),
])
def test_state_labels(row, label):
    assert display_state(row, now=100.0)[0] == label
    if label == "BACKOFF":
        assert display_state(row, now=100.0)[1] == "crashed, restart in 40s"


def test_timeline_clips_lifetimes_to_the_window():
    events = [{"id": 1, "ts": 50.0, "agent": "a", "kind": "running", "detail": {}},
              {"id": 2, "ts": 150.0, "agent": "a", "kind": "exited", "detail": {}},
              {"id": 3, "ts": 150.0, "agent": "a", "kind": "crash", "detail": {}},
              {"id": 4, "ts": 160.0, "agent": "b", "kind": "exited", "detail": {}},
              {"id": 5, "ts": 170.0, "agent": "a", "kind": "running", "detail": {}}]
    view = tracing.timeline(events, {"a": 170.0, "c": 20.0}, since=100.0, now=200.0)
    assert view["spans"] == [
        {"agent": "a", "start": 100.0, "end": 150.0, "ended_by": "exited"},
        {"agent": "b", "start": 100.0, "end": 160.0, "ended_by": "exited"},
        {"agent": "a", "start": 170.0, "end": None, "ended_by": None},
        {"agent": "c", "start": 100.0, "end": None, "ended_by": None}]
    assert view["points"] == [{"agent": "a", "ts": 150.0, "kind": "crash"}]


# --- team.web and [program:web] -------------------------------------------------------------

def web_team(tmp_path, web: dict, agents: dict | None = None):
    path = tmp_path / "data" / "team.yaml"
    return parse_team({"team": {"web": web}, "agents": agents or {"a": {}}}, str(path), path)


@pytest.mark.parametrize("web, message", [
    ({**WEB, "host": "0.0.0.0"}, "team.web.host: '0.0.0.0' is not a loopback address"),
    ({"port": 8099, "username": "ops"}, "team.web: missing password_env"),
    ({**WEB, "colour": 1}, "team.web.colour: unknown key"),
])
def test_bad_web_blocks_are_one_line(tmp_path, web, message):
    with pytest.raises(TeamError, match=message) as caught:
        web_team(tmp_path, web)
    assert "\n" not in str(caught.value)


def test_an_agent_named_web_clashes_with_the_program(tmp_path):
    with pytest.raises(TeamError, match="agents.web: this name is the web program's"):
        web_team(tmp_path, WEB, {"web": {}})
    path = tmp_path / "data" / "team.yaml"
    with pytest.raises(TeamError, match="agents.web: this name is the web program's"):
        parse_team({"team": {"http": WEB}, "agents": {"web": {}}}, str(path), path)


def test_the_dashboard_and_xmlrpc_need_a_port_each(tmp_path):
    path = tmp_path / "data" / "team.yaml"
    with pytest.raises(TeamError, match="team.web.port: 8099 is team.http's port too") as caught:
        parse_team({"team": {"http": WEB, "web": WEB}, "agents": {"a": {}}}, str(path), path)
    assert "\n" not in str(caught.value)


def test_web_program_round_trips_through_supervisor(tmp_path):
    from tests.unit.test_confgen import argv_of, expected_python, programs, supervisor_read
    team = web_team(tmp_path, {**WEB, "host": "10.0.0.5", "allow_remote": True})
    found = programs(supervisor_read(team))
    assert sorted(found) == ["a", "web"]
    _, proc = found["web"]
    assert argv_of(proc) == [expected_python(team), "-m", "coffee_team.web", "--team",
                             str(team.path.resolve())]
    assert proc.autostart and proc.autorestart
    without_web = parse_team({"agents": {"a": {}}}, "t", team.path)
    assert "[program:web]" not in confgen.render(without_web)["supervisord.conf"]


# --- the Prometheus exposition ----------------------------------------------------------------

def test_duration_histogram_parses_and_counts(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families
    from coffee_team import promexport
    queue = MessageQueue(str(tmp_path / "q.db"), agents=AGENTS)
    for kind in ('odd "type"\\n', "spec_created"):
        queue.send("cli", "architect", kind, {})
        (task,) = queue.claim("architect")
        queue.mark_completed(task.id, {})
    histogram = promexport.DurationHistogram()
    first = promexport.render(None, queue, AGENTS, histogram).decode()
    again = promexport.render(None, queue, AGENTS, histogram).decode()
    assert first == again  # nothing new: the same counts, not counted twice
    families = {f.name: f for f in text_string_to_metric_families(first)}
    counts = {s.labels["type"]: s.value for s in families["coffee_task_duration_seconds"].samples
              if s.name.endswith("_count")}
    assert counts == {'odd "type"\\n': 1, "spec_created": 1}
    tasks = {(s.labels["agent"], s.labels["status"]): s.value
             for s in families["coffee_tasks"].samples}
    assert tasks[("architect", "completed")] == 2 and tasks[("code_developer", "pending")] == 0
    assert families["coffee_supervisord_up"].samples[0].value == 0
    queue.close()


def test_todays_llm_spend_is_a_gauge_per_agent():
    """status rows carry today's spend (status.queue_columns); the scrape shows the same."""
    from prometheus_client.core import GaugeMetricFamily
    from coffee_team import promexport
    status = status_of(agent("architect", cost_today_usd=0.375, tokens_today=1200),
                       agent("code_developer", cost_today_usd=0.0, tokens_today=0),
                       agent("assistant"))  # database unreadable: no spend known
    families = {f.name: f for f in promexport.agent_families(status)}
    for name, expected in (("coffee_agent_cost_today_dollars", 0.375),
                           ("coffee_agent_tokens_today", 1200)):
        family = families[name]
        assert isinstance(family, GaugeMetricFamily)  # it falls back to 0 at UTC midnight
        values = {s.labels["agent"]: s.value for s in family.samples}
        assert values == {"architect": expected, "code_developer": 0}


def test_the_page_and_metrics_share_one_status_per_ttl(tmp_path):
    """Prometheus scraping while people watch: supervisord and /proc are read once per ttl."""
    team = parse_team({"team": {"web": WEB}, "agents": {a: {} for a in AGENTS}},
                      str(tmp_path / "data" / "team.yaml"), tmp_path / "data" / "team.yaml")
    fetched, now = [], [1000.0]

    def fetch():
        fetched.append(now[0])
        return status_of(agent("architect"), agent("code_developer"))

    snapshots = Snapshots(team, MessageQueue(str(tmp_path / "q.db"), agents=AGENTS), ttl=0.5,
                          clock=lambda: now[0], fetch_status=fetch)
    app = server.Dashboard(team, snapshots, "ops", "s3cret")
    try:
        snapshots.dashboard()
        assert b'coffee_agent_up{agent="architect"} 1.0' in app.metrics()
        assert fetched == [1000.0]
        now[0] += 0.6  # past the ttl: the next scrape reads afresh
        app.metrics()
        snapshots.dashboard()
        assert fetched == [1000.0, 1000.6]
        snapshots.invalidate()  # an action: its effect shows at once
        app.metrics()
        assert fetched == [1000.0, 1000.6, 1000.6]
    finally:
        snapshots.close()


def test_the_dashboard_waits_for_a_database_the_watchdog_has_yet_to_make(tmp_path, capsys):
    """A boot by supervisord alone: the watchdog makes the database, maybe after the web
    program started, which exited 2 ("database not found", an error exit in status). It
    waits, never making the database itself, and exits as before if none comes."""
    from coffee_team.errors import DatabaseMissing
    from coffee_team.web import main
    team = parse_team({"team": {"web": WEB}, "agents": {"a": {}}}, "t",
                      tmp_path / "data" / "team.yaml")
    (tmp_path / "data").mkdir()
    now = [0.0]

    def sleep(seconds):
        assert not (tmp_path / "data" / "orchestrator.db").exists()  # never made here
        now[0] += seconds
        if now[0] >= 1.0:  # the watchdog makes it 1 s in
            MessageQueue.from_team(team).close()
    queue = main.open_queue(team, wait=20, clock=lambda: now[0], sleep=sleep)
    queue.close()
    log = capsys.readouterr().err
    assert log.count("waiting up to 20 s for the database") == 1
    assert "database not found" in log and "database found" in log and 1.0 <= now[0] < 1.5
    other = parse_team({"team": {"web": WEB, "database_path": "sqlite:///data/none.db"},
                        "agents": {"a": {}}}, "t", tmp_path / "data" / "team.yaml")
    now[0] = 0.0
    with pytest.raises(DatabaseMissing, match="none.db: database not found"):
        main.open_queue(other, wait=2, clock=lambda: now[0],
                        sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert now[0] >= 2 and not (tmp_path / "data" / "none.db").exists()
    assert capsys.readouterr().err.count("waiting up to 2 s") == 1
