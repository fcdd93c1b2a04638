"""The dashboard of a running demo team under a real supervisord, in a real browser (Debian's
headless Chromium driven by playwright, at 1280×800), and its /metrics against ``status
--json``; it follows `coffee-team apply` and `coffee-team restart web` (issue 26, finding 8).

Each test boots its own team (a boot costs seconds); the screenshots are kept in
tests/artifacts/ for a person to look at.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from tests.harness import boot_supervisord, demo_agents, wait_until

pytestmark = pytest.mark.slow

pytestmark = pytest.mark.slow  # the tests here start processes

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "dashboard-test-password"
SCREEN = {"width": 1280, "height": 800}
HTML_TYPE = "<b>bold</b>"   # a task type that would be markup if the page rendered it as such
# The flood test's head timeout (team.web.head_timeout; 10 s by default): the trickling
# connections are cut the same way, sooner.
FLOOD_HEAD_TIMEOUT = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dashboard(project):
    """The demo team and an agent whose every task fails (``flaky``), with team.web, all
    RUNNING, and the web program answering."""
    return boot_dashboard(project)


@pytest.fixture
def short_head_dashboard(project):
    """The same with a head timeout of FLOOD_HEAD_TIMEOUT seconds."""
    return boot_dashboard(project, head_timeout=FLOOD_HEAD_TIMEOUT)


def boot_dashboard(project, **web):
    port = free_port()
    agents = {**demo_agents(), "flaky": {
        "priority": 5, "handler": "coffee_team.agent.faults:flaky",
        "options": {"fail_times": 10**6, "record_file": str(project.root / "flaky.txt")}}}
    # a long backoff: a killed agent stays crashed until someone presses restart
    project.write_team(agents, web={"port": port, "username": "ops",
                                    "password_env": "CT_WEB_PASSWORD", **web},
                       restart_backoff=60.0)
    boot_supervisord(project, env={"CT_WEB_PASSWORD": PASSWORD})
    project.wait_states("RUNNING", timeout=40)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(base + "/api/dashboard") is not None, 15, 0.1, "the web program")
    return project, base


def browser_page(p, base: str):
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    context = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD},
                                  viewport=SCREEN)
    page = context.new_page()
    page.goto(base + "/")
    return browser, page


def needs_browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    return playwright


def get(url: str) -> bytes | None:
    token = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()
    except OSError:
        return None


def test_metrics_parse_and_agree_with_status_json(dashboard):
    from prometheus_client.parser import text_string_to_metric_families
    project, base = dashboard
    text = get(base + "/metrics").decode()
    status = json.loads(project.cli("status", "--json", check=True).stdout)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    for row in status["agents"]:
        label = (("agent", row["name"]),)
        assert samples[("coffee_agent_up", label)] == (row["state"] == "RUNNING")
        assert samples[("coffee_agent_restarts_total", label)] == row["restarts"]
        assert samples[("coffee_agent_paused", label)] == row["paused"]
        assert samples[("coffee_agent_rss_bytes", label)] > 0
        for state in ("pending", "in_progress", "completed", "failed", "cancelled"):
            assert ("coffee_tasks", (("agent", row["name"]), ("status", state))) in samples
    assert samples[("coffee_supervisord_up", ())] == 1
    assert any(name == "coffee_task_duration_seconds_count" for name, _ in samples)
    # the textfile-collector form is the same exposition
    cli = project.cli("metrics", "--prometheus", check=True).stdout
    assert {f.name for f in text_string_to_metric_families(cli)} == \
        {f.name for f in text_string_to_metric_families(text)}


def test_the_page_follows_a_crash_and_a_restart_in_a_browser(dashboard):
    """Also finding 8: the crash still counts after the restart by hand (the watchdog's count
    toward give-up is cleared by it), and the agent's log, followed, shows the new process."""
    playwright = needs_browser()
    project, base = dashboard
    names = project.team.names
    with playwright.sync_playwright() as p:
        browser, page = browser_page(p, base)
        try:
            # the page's CSP forbids eval, so waits are locators, not wait_for_function
            running = page.locator("#agents td.state[data-state=RUNNING]")
            playwright.expect(running).to_have_count(len(names), timeout=10_000)
            assert page.locator("#agents td.state").count() == len(names)

            victim = "code_searcher"
            row = page.locator(f'#agents tr[data-agent="{victim}"]')
            row.locator("button[data-log]").click()
            log = page.locator("#log")
            playwright.expect(log).to_contain_text(f"{victim}: started (PID", timeout=5_000)
            pid = project.infos()[victim]["pid"]
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            row.locator("td.state[data-state=BACKOFF]").wait_for(timeout=3_000)
            seen_after = time.monotonic() - killed_at
            assert "crashed, restart in" in row.locator("td.state").inner_text()
            assert seen_after <= 3.0
            crashes = row.locator("td").nth(8)
            playwright.expect(crashes).to_have_text("1", timeout=5_000)

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            row.locator('button[data-action="restart"]').click()
            page.locator("#message").filter(has_text=f"{victim}: restart requested").wait_for(
                timeout=10_000)
            row.locator("td.state[data-state=RUNNING]").wait_for(timeout=15_000)
            new_pid = project.infos()[victim]["pid"]
            assert new_pid != pid
            # followed: the new process's first line arrives without reopening the log
            playwright.expect(log).to_contain_text(f"started (PID {new_pid}", timeout=5_000)
            # the restart by hand cleared the watchdog's count; the crash still shows
            status = json.loads(project.cli("status", "--json", check=True).stdout)
            assert {a["name"]: a for a in status["agents"]}[victim]["restarts"] == 0
            playwright.expect(crashes).to_have_text("1")
            assert "1 by hand" in crashes.get_attribute("title")
        finally:
            browser.close()


def test_failed_tasks_past_the_latest_30_and_the_table_at_1280(dashboard):
    playwright = needs_browser()
    project, base = dashboard
    rpc = project.rpc()
    failed = [rpc.coffee.sendMessage("test", "flaky", HTML_TYPE, "{}", 5) for _ in range(45)]
    wait_until(lambda: all(rpc.coffee.getTask(i)["status"] == "failed" for i in failed), 30, 0.2,
               "the flaky agent to fail its tasks")
    rpc.coffee.pauseAgent("assistant", "test")
    newer = [rpc.coffee.sendMessage("test", "assistant", "later", "{}", 5) for _ in range(35)]
    with playwright.sync_playwright() as p:
        browser, page = browser_page(p, base)
        try:
            rows = page.locator("#tasks tbody tr[data-task]")
            playwright.expect(rows.first).to_have_attribute("data-task", str(newer[-1]),
                                                            timeout=10_000)
            assert rows.count() == 30  # the latest 30: none of the failed ones
            page.select_option("#task-status", "failed")
            page.select_option("#task-agent", "flaky")
            playwright.expect(rows.first).to_have_attribute("data-task", str(failed[-1]),
                                                            timeout=5_000)
            shown = [int(r.get_attribute("data-task")) for r in rows.all()]
            starts = [shown[0]]
            assert len(shown) == 30
            while page.locator("button[data-page=older]").is_enabled():
                page.click("button[data-page=older]")
                playwright.expect(rows.first).not_to_have_attribute("data-task", str(starts[-1]),
                                                                    timeout=5_000)
                page_ids = [int(r.get_attribute("data-task")) for r in rows.all()]
                assert page_ids[0] < shown[-1]
                starts.append(page_ids[0])
                shown += page_ids
            # every failed task of flaky, newest first (a broadcast it failed is one of them)
            expected = [t["id"] for t in rpc.coffee.listTasks(
                {"status": "failed", "agent": "flaky", "limit": 1000})]
            assert len(starts) >= 2 and shown == expected and set(failed) <= set(shown)
            page.click("button[data-page=newer]")
            playwright.expect(rows.first).to_have_attribute("data-task", str(starts[-2]),
                                                            timeout=5_000)

            # the log shows the failures' lines as text: the task type is not markup
            page.locator('#agents tr[data-agent="flaky"] button[data-log]').click()
            playwright.expect(page.locator("#log")).to_contain_text(f"({HTML_TYPE}) failed",
                                                                    timeout=5_000)
            assert page.locator("#log b").count() == 0

            # every column, the actions last, on a 1280-pixel screen: no sideways scrolling
            assert page.evaluate("document.documentElement.scrollWidth") <= SCREEN["width"]
            actions = page.locator("#agents thead th").last.bounding_box()
            assert actions["x"] + actions["width"] <= SCREEN["width"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-1280.png"))
        finally:
            browser.close()


def test_the_dashboard_stays_reachable_under_an_idle_and_a_slow_flood(short_head_dashboard,
                                                                     reliability):
    """Finding 2: the dashboard had no request timeout: ~1,000 idle connections made it
    unreachable. 1,100 idle connections and 50 that trickle a header byte every 0.5 s."""
    from coffee_team.dashboard import httpd
    project, base = short_head_dashboard
    port = int(base.rsplit(":", 1)[1])
    web = psutil.Process(project.infos()["web"]["pid"])
    idle, slow, threads_max = [], [], 0
    try:
        for i in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            if i % 100 == 0:
                threads_max = max(threads_max, web.num_threads())
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
            slow.append(sock)
        slow_opened = time.monotonic()
        asked = time.monotonic()
        assert json.loads(get(base + "/api/dashboard"))["agents"]
        answered_in = time.monotonic() - asked
        alive = list(slow)
        while alive and time.monotonic() - slow_opened < FLOOD_HEAD_TIMEOUT + 10:
            time.sleep(0.5)
            for sock in list(alive):
                try:
                    sock.sendall(b"a")
                except OSError:
                    alive.remove(sock)
        slow_cut_after = time.monotonic() - slow_opened
        assert not alive
        assert json.loads(get(base + "/api/dashboard"))["agents"]
    finally:
        for sock in idle + slow:
            sock.close()
    assert answered_in < 2.0 and threads_max <= httpd.HARD_LIMIT * httpd.MAX_CONNECTIONS + 10
    assert slow_cut_after < FLOOD_HEAD_TIMEOUT + 3
    reliability("idle and slow connections on the dashboard", "1100 idle + 50 slowloris "
                "connections, demo team", "connection flood", 0, "0",
                f"/api/dashboard answered in {answered_in:.2f}s during it; web program <= "
                f"{threads_max} threads; trickling connections cut {slow_cut_after:.1f}s after "
                f"they opened (head_timeout {FLOOD_HEAD_TIMEOUT:g}s)")


def test_the_dashboard_follows_apply_and_restart_web(dashboard, reliability):
    """Finding 8: an agent added with `apply` was not shown until the web program restarted,
    and `coffee-team restart web` refused."""
    project, base = dashboard
    web_pid = project.infos()["web"]["pid"]
    doc = yaml.safe_load(project.team_file.read_text())
    doc["agents"]["reviewer"] = {"priority": 6, "handler": "coffee_team.agent.demo:handle"}
    project.team_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    project.cli("apply", check=True)
    applied = time.monotonic()

    def agents_shown() -> set[str]:
        return {a["name"] for a in json.loads(get(base + "/api/dashboard"))["agents"]}
    wait_until(lambda: "reviewer" in agents_shown(), 10, 0.05, "the dashboard to show reviewer")
    shown_after = time.monotonic() - applied
    assert project.infos()["web"]["pid"] == web_pid  # reloaded, not restarted

    out = project.cli("restart", "web", env={"CT_WEB_PASSWORD": PASSWORD}, check=True)
    assert out.stdout.strip().endswith("web: restarted")
    assert project.infos()["web"]["pid"] != web_pid
    wait_until(lambda: get(base + "/api/dashboard") is not None, 15, 0.1, "the web program")
    assert "reviewer" in agents_shown()
    reliability("agent added while the dashboard is open", "demo team + 1 agent by apply",
                "team file changed; web program restarted", 0, "0",
                f"new agent on the dashboard {shown_after:.2f}s after apply, same web PID; "
                "`restart web` exit 0")


def test_a_boot_by_supervisord_alone_shows_no_web_exit(project):
    """`supervisord -c` on a fresh project: only the watchdog makes the database (never the
    web program), and it may make it after the web program started. The web program exited 2
    ("database not found"): `exited: web (exit status 2; not expected)` in supervisord's log,
    BACKOFF in status. It waits for the database instead, saying so in its log."""
    port = free_port()
    project.write_team(web={"port": port, "username": "ops",
                            "password_env": "CT_WEB_PASSWORD"})
    assert not Path(project.team.database_url).exists()
    started = time.monotonic()
    boot_supervisord(project, env={"CT_WEB_PASSWORD": PASSWORD})
    project.wait_states("RUNNING", timeout=40)
    wait_until(lambda: get(f"http://127.0.0.1:{port}/api/dashboard") is not None, 30, 0.1,
               "the dashboard")
    answered = time.monotonic() - started
    log = (project.root / "data" / "logs" / "supervisord.log").read_text()
    web_log = (project.root / "data" / "logs" / "web.log").read_text()
    assert "exited: web" not in log and "web entered BACKOFF" not in log, web_log
    assert project.infos()["web"]["statename"] == "RUNNING"
    assert "database not found" not in web_log or "waiting up to" in web_log, web_log
    waited = "waited" if "waiting up to" in web_log else "did not wait"
    print(f"dashboard answered {answered:.2f} s after the boot began; the web program {waited}")
