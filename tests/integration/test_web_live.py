"""The dashboard of a running demo team under a real supervisord, in a real browser (Debian's
headless Chromium driven by playwright), and its /metrics against ``status --json``.

One boot serves every check (a boot costs seconds); the screenshot is kept in
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

import pytest

from tests.harness import boot_supervisord, wait_until

pytestmark = pytest.mark.slow  # the tests here start processes

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "dashboard-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dashboard(project):
    """The demo team with team.web, all RUNNING, and the web program answering."""
    port = free_port()
    # a long backoff: a killed agent stays crashed until someone presses restart
    project.write_team(web={"port": port, "username": "ops", "password_env": "CT_WEB_PASSWORD"},
                       restart_backoff=60.0)
    boot_supervisord(project, env={"CT_WEB_PASSWORD": PASSWORD})
    project.wait_states("RUNNING", timeout=40)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(base + "/api/dashboard") is not None, 15, 0.1, "the web program")
    return project, base


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
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    project, base = dashboard
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            context = browser.new_context(http_credentials={"username": "ops",
                                                            "password": PASSWORD},
                                          viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            page.goto(base + "/")
            # the page's CSP forbids eval, so waits are locators, not wait_for_function
            running = page.locator("#agents td.state[data-state=RUNNING]")
            playwright.expect(running).to_have_count(6, timeout=10_000)
            assert page.locator("#agents td.state").count() == 6

            victim = "code_searcher"
            row = page.locator(f'#agents tr[data-agent="{victim}"]')
            pid = project.infos()[victim]["pid"]
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            row.locator("td.state[data-state=BACKOFF]").wait_for(timeout=3_000)
            seen_after = time.monotonic() - killed_at
            assert "crashed, restart in" in row.locator("td.state").inner_text()
            assert seen_after <= 3.0

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            row.locator('button[data-action="restart"]').click()
            page.locator("#message").filter(has_text=f"{victim}: restart requested").wait_for(
                timeout=10_000)
            row.locator("td.state[data-state=RUNNING]").wait_for(timeout=15_000)
            assert project.infos()[victim]["pid"] != pid
        finally:
            browser.close()
