"""The web program (issue 16): dashboard data call and /metrics scrape at 6 and 100 agents with
100,000 tasks in the database, its RSS, and the idle CPU of team + watchdog + web next to
six ``sleep infinity`` under a plain supervisord.

    python bench/web_bench.py [--quick] [--out bench/results/web.json]

Every call is timed uncached: dashboard calls and scrapes are spaced past the program's 0.5 s
sharing window (the page and /metrics share one status for that long), so each one asks
supervisord, /proc and the database afresh.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import argparse
import base64
import json
import socket
import time
import urllib.request
from pathlib import Path

import psutil

from coffee_team.queue import MessageQueue
from lifecycle_common import (IDLE, bench_project, idle_cpu, log, summary, wait_running,
                              write_plain_config)
from lifecycle_idle import SLEEPERS
from tests.harness import Project, boot_supervisord, demo_agents, wait_until

PASSWORD = "bench-password"
TASKS = 100_000
RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agents(count: int) -> dict:
    if count == 6:
        return demo_agents(check_interval=IDLE)
    return {f"agent{i:03d}": {"priority": i // 10, "check_interval": IDLE,
                              "handler": "coffee_team.agent.demo:handle"} for i in range(count)}


def fill(project: Project, tasks: int) -> None:
    """``tasks`` tasks over every agent: 1 % pending, the rest completed (with metrics rows)."""
    names = project.team.names
    with MessageQueue.from_team(project.team, max_queue_size=tasks) as queue:
        rows = [dict(sender="bench", recipient=names[i % len(names)], type=f"t{i % 7}",
                     content={"i": i}) for i in range(tasks)]
        for start in range(0, tasks, 5000):
            queue.send_many(rows[start:start + 5000])
        per_agent = tasks // len(names)
        for name in names:
            for task in queue.claim(name, limit=per_agent - per_agent // 100):
                queue.mark_completed(task.id, {"ok": True})


def get(url: str) -> bytes:
    token = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def timed(url: str, runs: int, spacing: float) -> list[float]:
    get(url)  # warm: the first call reads the journal's last hour
    took = []
    for _ in range(runs):
        time.sleep(spacing)
        started = time.perf_counter()
        get(url)
        took.append(time.perf_counter() - started)
    return took


def boot_with_web(project: Project, count: int, tasks: int) -> str:
    port = free_port()
    project.write_team(agents(count), web={"port": port, "username": "ops",
                                           "password_env": "CT_BENCH_WEB"})
    if tasks:
        fill(project, tasks)
    boot_supervisord(project, env={"CT_BENCH_WEB": PASSWORD})
    wait_running(project, project.team.names, timeout=120)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base), 20, 0.1, "the web program")
    return base


def _answers(base: str) -> bool:
    try:
        return bool(get(base + "/api/dashboard"))
    except OSError:
        return False


def bench_calls(count: int, runs: int) -> dict:
    with bench_project(fast=True) as project:
        base = boot_with_web(project, count, TASKS)
        time.sleep(2)
        dashboard = timed(base + "/api/dashboard", runs, 0.6)
        metrics = timed(base + "/metrics", runs, 0.6)
        web = psutil.Process(project.infos()["web"]["pid"])
        rss_mb = web.memory_info().rss / 2**20
    log(f"{count} agents: dashboard p50 {1000 * summary(dashboard)['median']:.1f} ms, "
        f"/metrics p50 {1000 * summary(metrics)['median']:.1f} ms, web RSS {rss_mb:.1f} MB")
    return {"agents": count, "tasks": TASKS, "dashboard_s": summary(dashboard),
            "metrics_s": summary(metrics), "web_rss_mb": round(rss_mb, 1),
            "targets": {"dashboard_p50_s": 0.1, "metrics_p50_s": 0.05}}


def bench_idle(window: float) -> dict:
    with bench_project() as team, bench_project("cbb-") as base:
        boot_with_web(team, 6, 0)
        write_plain_config(base, SLEEPERS)
        boot_supervisord(base)
        wait_running(base, SLEEPERS)
        time.sleep(10)
        (d_team, d_base), wall = idle_cpu(window, team, base)
    team_pct = 100 * sum(d_team.values()) / wall
    base_pct = 100 * sum(d_base.values()) / wall
    log(f"idle: team+watchdog+web {team_pct:.3f}% baseline {base_pct:.3f}% "
        f"({ {k: round(100 * v / wall, 3) for k, v in d_team.items()} })")
    return {"team_with_web_percent": round(team_pct, 3), "baseline_percent": round(base_pct, 3),
            "over_baseline_percent": round(team_pct - base_pct, 3), "window_s": window,
            "by_role_percent": {k: round(100 * v / wall, 3) for k, v in d_team.items()},
            "target_over_baseline_percent": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "web.json"))
    args = parser.parse_args()
    runs = 10 if args.quick else 30
    results = {"calls": [bench_calls(6, runs), bench_calls(100, runs)],
               "idle": bench_idle(20.0 if args.quick else 60.0)}
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
