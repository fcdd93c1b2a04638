"""Lifecycle benchmarks of coffee-team under a real supervisord, each against a plain baseline.

    python bench/lifecycle_bench.py [--quick] [--only NAME ...] [--json bench/results/lifecycle.json]

Scenarios (each runnable alone with --only):
  restart    crash -> restart lateness vs the due time (restart_backoff 1), delays vs 1x/2x/4x
  requeue    kill -9 of an agent holding a task -> task pending again (DB polled every 5 ms)
  idle_cpu   CPU of the idle demo team + watchdog vs supervisord with 6 `sleep infinity`
  status     `coffee-team status` wall time vs `supervisorctl status` on the same team
  scale      100 agents: staggered boot vs plain unstaggered supervisord, status, broadcast
             drain, 10 simultaneous crashes, idle CPU, fds, and what breaks first
  scale500   the same at 500 agents (50 simultaneous crashes)
  boot       the boot alone at 101 and 500 agents (all RUNNING, all ready, group by group)
             vs supervisord spawning as many bare python sleepers and vs plain unstaggered
             supervisord with the same commands, interleaved; supervisord's fds vs minfds
  rss        RSS per idle agent vs a bare `python -c "import time; time.sleep(1e9)"`
  consumers  queue throughput with 1/2/4/8 consumer processes (claim + mark_completed)

They live in lifecycle_restart.py (restart, requeue), lifecycle_idle.py (idle_cpu, status,
rss), lifecycle_scale.py, lifecycle_boot.py and lifecycle_consumers.py; what they share in lifecycle_common.py,
the project under a real supervisord in tests/harness.py.

Every figure is repeated (>= 3 runs; --quick: 2 and shorter windows) and reported as
min/median/max with the raw samples. Each boot lives in a fresh /tmp project and is always
shut down and killed (try/finally), together with every process it started.
"""
from __future__ import annotations

from repo_root import ROOT  # first: the repository root on sys.path for tests.harness

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

from lifecycle_common import compile_sources, log
from lifecycle_consumers import bench_consumers
from lifecycle_idle import bench_idle_cpu, bench_rss, bench_status
from lifecycle_restart import bench_requeue, bench_restart
from lifecycle_boot import bench_boot
from lifecycle_scale import bench_scale

SCENARIOS = {"restart": bench_restart, "requeue": bench_requeue, "idle_cpu": bench_idle_cpu,
             "status": bench_status, "scale": bench_scale, "boot": bench_boot, "rss": bench_rss,
             "consumers": bench_consumers, "scale500": bench_scale}
SCALE500_AGENTS = 500


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs, shorter windows")
    parser.add_argument("--repeat", type=int, default=None, help="runs per scenario (default 3)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS),
                        help="run only this scenario (repeatable)")
    parser.add_argument("--agents", type=int, default=100, help="team size for 'scale'")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "lifecycle.json"),
                        help="results file; scenarios not run keep their previous results")
    args = parser.parse_args(argv)
    # the harness warns through logging when it has to kill what a boot left behind
    logging.basicConfig(format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    repeat = args.repeat or (2 if args.quick else 3)
    compile_sources()
    results = previous_results(args.json)
    failed = []
    for name in args.only or list(SCENARIOS):
        log(f"== {name} ({repeat} runs{', quick' if args.quick else ''})")
        started = time.time()
        try:
            data = run_scenario(name, repeat, args)
        except Exception as exc:
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            data = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        data.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"), quick=args.quick,
                    seconds=round(time.time() - started, 1))
        results[name] = data
        if args.json:  # after every scenario: a later crash keeps what was measured
            write_results(args.json, results)
    return 1 if failed else 0


def run_scenario(name: str, repeat: int, args) -> dict:
    if name == "scale":
        return bench_scale(repeat, args.quick, n=args.agents)
    if name == "scale500":
        return bench_scale(repeat, args.quick, n=SCALE500_AGENTS)
    return SCENARIOS[name](repeat, args.quick)


def previous_results(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return {}
    try:
        return json.loads(Path(path).read_text()).get("scenarios", {})
    except (OSError, ValueError):
        return {}


def write_results(path: str, results: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    doc = {"python": sys.version.split()[0], "cores": os.cpu_count(),
           "sqlite_version": sqlite3.sqlite_version, "scenarios": results}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
