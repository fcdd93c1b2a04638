"""The watchdog's own CPU per health check and per idle loop pass at 100 and 500 agents.

    python bench/watchdog_bench.py [--quick] [--json bench/results/watchdog.json]

The watchdog (coffee_team.watchdog.listener.Watchdog) runs in this process against a fake
supervisord (tests.fakes.FakeSupervisor) whose agents are real processes (``sleep``), a real
SQLite queue and real heartbeat files, so the /proc pass and the file reads are the real ones;
only the clock is fake (30 s health checks, as the team's default, without waiting). CPU is
this process's CPU time. Side by side, interleaved, in the same run: the same watchdog with the
previous sampler (a psutil walk of the whole process table per agent, psutil.Process objects
kept per pid), the baseline. Idle % of a core = one loop pass per second + one health check
per 30 s.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.fakes)

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from coffee_team.heartbeat import write_heartbeat
from coffee_team.queue import MessageQueue
from coffee_team.team import parse_team
from coffee_team.watchdog.health import Usage
from coffee_team.watchdog.listener import Watchdog
from coffee_team.watchdog.protocol import ListenerProtocol
from lifecycle_common import summary
from tests.fakes import FakeClock, FakeSupervisor

HEALTH_EVERY = 30.0


class PerAgentPsutilSampler:
    """The baseline: the sampler before the one-pass table, for each agent a psutil walk of
    its tree (``children(recursive=True)`` reads every process's parent) with the Process
    objects kept between checks for interval-less cpu_percent."""

    def __init__(self):
        self._trees: dict[int, dict[int, psutil.Process]] = {}

    def sample(self, pids) -> dict[int, Usage]:
        return {pid: usage for pid in pids if (usage := self._one(pid)) is not None}

    def _one(self, pid: int) -> Usage | None:
        known = self._trees.setdefault(pid, {})
        try:
            root = known.get(pid) or psutil.Process(pid)
            tree = [root] + root.children(recursive=True)
        except psutil.Error:
            self._trees.pop(pid, None)
            return None
        cpu, rss, current = 0.0, 0, {}
        for proc in tree:
            tracked = known.get(proc.pid)
            try:
                if tracked is None:
                    tracked = proc
                    tracked.cpu_percent(None)
                cpu += tracked.cpu_percent(None)
                rss += tracked.memory_info().rss
                current[proc.pid] = tracked
            except psutil.Error:
                continue
        self._trees[pid] = current
        return Usage(round(cpu, 1), round(rss / 2**20, 1))


def watchdog_cost(n: int, pids: list[int], baseline: bool, seconds: int) -> tuple[float, float]:
    """(median CPU s of a health check, median CPU s of an idle loop pass) over ``seconds``
    of fake time, heartbeats written every 30 s as agents do."""
    with tempfile.TemporaryDirectory(prefix="cb-wd-") as tmp:
        root = Path(tmp)
        agents = {f"a{i:03d}": {"priority": i % 10} for i in range(n)}
        team = parse_team({"team": {"health_check_interval": HEALTH_EVERY}, "agents": agents},
                          "bench", path=root / "data" / "team.yaml")
        team.status_dir.mkdir(parents=True, exist_ok=True)
        clock = FakeClock(time.time())
        rpc = FakeSupervisor(team.names, state="RUNNING", clock=clock)
        rpc.pids.update(zip(team.names, pids))
        with MessageQueue(str(root / "q.db"), agents=team.names, clock=clock,
                          handles={a.name: a.handles for a in team.agents}) as queue:
            protocol = ListenerProtocol(io.StringIO(), io.StringIO(), io.StringIO(), clock=clock)
            wd = Watchdog(team, protocol, rpc, queue, clock=clock, mono=clock.monotonic)
            if baseline:
                wd.sampler = PerAgentPsutilSampler()
            checks, loops = [], []
            for second in range(seconds):
                if second % 30 == 0:
                    for name in team.names:
                        write_heartbeat(team.status_dir, name, {"last_heartbeat": clock()})
                clock.advance(1.0)
                checking = clock.monotonic() >= wd.next_health_check
                t0 = time.process_time()
                wd.on_timer()
                wd.seconds_to_next_timer()
                (checks if checking else loops).append(time.process_time() - t0)
    return statistics.median(checks), statistics.median(loops)


def idle_percent(check: float, loop: float) -> float:
    return 100.0 * (loop + check / HEALTH_EVERY)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer fake seconds per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" /
                                               "watchdog.json"))
    args = parser.parse_args(argv)
    seconds = 95 if args.quick else 185  # 3 or 6 health checks
    results = {}
    for n in (100, 500):
        sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(n)]
        try:
            pids = [p.pid for p in sleepers]
            runs = {"watchdog": [], "baseline": []}
            for _ in range(args.repeat):  # interleaved: drift hits both alike
                for label in runs:
                    runs[label].append(watchdog_cost(n, pids, label == "baseline", seconds))
        finally:
            for p in sleepers:
                p.kill()
                p.wait()
        results[n] = {label: {"health_check_cpu_s": summary(c for c, _ in r),
                              "loop_pass_cpu_s": summary(lp for _, lp in r),
                              "idle_percent_of_core": summary(idle_percent(c, lp) for c, lp in r)}
                      for label, r in runs.items()}
    print(f"{'agents':>6}  {'':9} {'health check':>13} {'loop pass':>10} {'idle % core':>12}")
    for n, by_label in results.items():
        for label, r in by_label.items():
            print(f"{n:>6}  {label:9} {1000 * r['health_check_cpu_s']['median']:10.1f} ms"
                  f" {1000 * r['loop_pass_cpu_s']['median']:7.2f} ms"
                  f" {r['idle_percent_of_core']['median']:11.2f} %")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"repeat": args.repeat, "quick": args.quick,
                                           "agents": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
