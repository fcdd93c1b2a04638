"""Notifications reach a person: a give-up under a real supervisord goes to a command target and
to a local JSON webhook (Apprise's json://) exactly once, a target that was down gets it once
it is back, and a kill -9 of supervisord in between sends nothing twice."""
from __future__ import annotations

import http.server
import json
import os
import signal
import sys
import threading
from pathlib import Path

import psutil
import pytest

from coffee_team.queue import MessageQueue
from tests.harness import boot_supervisord, wait_until

pytestmark = pytest.mark.slow
pytest.importorskip("apprise")

# Exits 1 while the "down" file exists; otherwise appends the notification it read to got.jsonl.
PAGER = """
import pathlib, sys
here = pathlib.Path(sys.argv[1])
if (here / "down").exists():
    sys.exit("pager unreachable")
with open(here / "got.jsonl", "a") as f:
    f.write(sys.stdin.read().replace("\\n", " ") + "\\n")
"""


class Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Webhook.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Webhook)  # a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_give_up_is_delivered_once_to_each_target_across_a_failure_and_a_kill_9(
        project, tmp_path, webhook):
    (tmp_path / "down").touch()
    (tmp_path / "pager.py").write_text(PAGER)
    pager = [sys.executable, str(tmp_path / "pager.py"), str(tmp_path)]
    project.write_team({"crasher": {"priority": 1, "handler": "coffee_team.agent.faults:crash",
                                    "options": {"crash_after": 1.5}}},
                       max_restart_attempts=1,
                       notify=[{"level": "CRITICAL", "command": pager, "name": "pager"},
                               {"level": "CRITICAL",
                                "url": f"json://127.0.0.1:{webhook}/hook"}])
    boot_supervisord(project)
    wait_until(lambda: Webhook.received, 40, 0.2, "the give-up at the webhook")
    assert Webhook.received[0]["type"] == "failure" and "crasher" in Webhook.received[0]["title"]
    with MessageQueue.from_team(project.team) as q:
        wait_until(lambda: any(r["failing"] for r in q.delivery_summary()), 10, 0.2,
                   "the pager to fail")
    shown = project.cli("notifications", check=True).stdout
    assert "delivery to pager: 0 delivered, 0 pending, 1 failed" in shown
    assert "pager unreachable" in shown

    os.kill(project.supervisord_pid(), signal.SIGKILL)
    watchdog = [p for p in project.processes() if "watchdog" in " ".join(p.info["cmdline"] or [])]
    psutil.wait_procs(watchdog, timeout=10)  # it exits when supervisord's pipe closes
    (project.root / "data" / "run" / "supervisor.sock").unlink(missing_ok=True)
    boot_supervisord(project)
    (tmp_path / "down").unlink()  # the pager is back
    wait_until(lambda: lines(tmp_path / "got.jsonl"), 20, 0.2, "the pager to get it")
    wait_until(lambda: "delivery to pager: 1 delivered" in project.cli("notifications").stdout,
               10, 0.2, "the delivery to be recorded")
    got = lines(tmp_path / "got.jsonl")
    assert len(got) == 1 and got[0]["level"] == "CRITICAL" and got[0]["sound"] is False
    assert len(Webhook.received) == 1  # not sent again after the kill -9
    shown = project.cli("notifications", "--json", check=True).stdout
    critical = [n for n in json.loads(shown) if n["level"] == "CRITICAL"]
    assert len(critical) == 1 and len(critical[0]["deliveries"]) == 2
    assert all(d["delivered_at"] for d in critical[0]["deliveries"])
