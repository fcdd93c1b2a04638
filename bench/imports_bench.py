"""What an idle agent imports and what each import costs, next to a bare sleeping python.

    python bench/imports_bench.py [--repeat 3] [--json bench/results/imports.json]

1. The agent-run path itself: ``python -X importtime -m coffee_team --team T agent run NAME``
   (what supervisord runs; here through runpy, with a SIGUSR2 handler that lists sys.modules)
   in a throwaway project on SQLite with the demo handler, its database created first (as the
   watchdog does before it launches agents), read once its heartbeat says idle:
   its VmRSS, next to a bare ``python -c 'import time; time.sleep()'`` started in the same run,
   the modules it holds (sys.modules: ``-X importtime`` also lists failed attempts) and their
   self and cumulative import time. Median of ``--repeat`` runs.
2. The RSS each module adds: a fresh ``python -c`` per module reads VmRSS (/proc/self/status)
   before and after ``import M`` (psycopg2 blocked, as an agent on SQLite does), median of
   ``--repeat``. The rows are the agent's imports with the largest cumulative time, and the
   modules an idle agent of such a team should not import at all (``imported: no``).

3. The client side of ``coffee-team status``: ``-X importtime`` of the CLI running ``status``
   with no supervisord to ask (start-up only) next to ``import supervisor.supervisorctl``,
   interleaved, median of ``--repeat``: wall time, modules and import time.

Prints the table (sorted by cumulative import time) and writes JSON.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path)

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TOP = 20  # rows of the agent's own imports in the table
# Not for an idle agent of a plain team on SQLite (tests/integration/test_lean_imports.py checks
# the same).
SHOULD_NOT = ("click", "coffee_team.team.llm", "coffee_team.llm.runner", "psutil",
              "prometheus_client", "opentelemetry.trace", "supervisor.options", "psycopg2",
              "coffee_team.cli", "peewee", "hashlib", "logging", "uuid", "decimal")
# Large imports worth a row even when they are not among the slowest.
ALWAYS = ("yaml", "sqlite3", "json", "coffee_team.queue", "coffee_team.team",
          "coffee_team.handlers")
# What `coffee-team start` and the watchdog do before agents launch: write the team's
# snapshot (team/snapshot.py), create (or upgrade) the schema.
CREATE_DATABASE = """
import sys
from coffee_team.queue import MessageQueue
from coffee_team.team import load_team
try:
    from coffee_team.team import snapshot
    snapshot.write_snapshot(sys.argv[1])
except ImportError:  # a checkout from before the snapshot
    pass
MessageQueue.from_team(load_team(sys.argv[1])).close()
"""
TEAM = """team:
  heartbeat_interval: 30
  heartbeat_stale_after: 300
agents:
  worker:
    check_interval: 86400
    handler: coffee_team.agent.demo:handle
    handles: [job]
"""
# ``python -m coffee_team ARGS`` that writes its sys.modules to a file on SIGUSR2
AGENT = """
import runpy, signal, sys
def dump(signum, frame):
    with open(modules_file, 'w') as f:
        f.write('\\n'.join(sorted(k for k, v in sys.modules.items() if v is not None)))
signal.signal(signal.SIGUSR2, dump)
modules_file = sys.argv.pop(1)
runpy.run_module('coffee_team', run_name='__main__', alter_sys=True)
"""
RSS_PROBE = """
import sys
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmRSS:'))
{block}
before = rss()
import {module}
print(rss() - before)
"""


# `coffee-team --team T status` with nothing to ask: the CLI's start-up and imports alone
STATUS = """
import sys
from coffee_team.cli import main
try:
    main(["--team", sys.argv[1], "status"])
except SystemExit:
    pass
"""
SUPERVISORCTL = "import supervisor.supervisorctl"


def summary(values) -> dict:
    values = [float(v) for v in values]
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values), "samples": [round(v, 3) for v in values]}


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def parse_importtime(stderr: str) -> dict[str, dict]:
    """``-X importtime`` lines → {module: {self_us, cumulative_us, depth}} (first import)."""
    found: dict[str, dict] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        found.setdefault(name.strip(), {"self_us": int(self_us), "cumulative_us": int(cumulative_us),
                                        "depth": depth})
    return found


def idle_agent_run() -> tuple[float, float, dict[str, dict], set[str]]:
    """One idle agent and one bare python side by side: (agent MB, bare MB, import times,
    the modules it holds)."""
    root = Path(tempfile.mkdtemp(prefix="cb-imports-"))
    try:
        (root / "data").mkdir()
        team_file = root / "data" / "team.yaml"
        team_file.write_text(TEAM)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        env["PYTHONPATH"] = str(ROOT)
        modules_file = root / "modules.txt"
        subprocess.run([PY, "-c", CREATE_DATABASE, str(team_file)], cwd=root, env=env, check=True,
                       stdin=subprocess.DEVNULL)
        agent = subprocess.Popen([PY, "-X", "importtime", "-c", AGENT, str(modules_file), "--team",
                                  str(team_file), "agent", "run", "worker"], cwd=root, env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        bare = subprocess.Popen([PY, "-c", "import time; time.sleep(1e9)"],
                                stdin=subprocess.DEVNULL)
        try:
            beat = root / "data" / "agent_status" / "worker_status.json"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if json.loads(beat.read_text()).get("state") == "idle":
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise RuntimeError("the agent did not become idle within 30 s")
                time.sleep(0.05)
            time.sleep(1.0)  # settled: the first periodic run and its claim are over
            agent_mb, bare_mb = vm_rss_kib(agent.pid) / 1024, vm_rss_kib(bare.pid) / 1024
            agent.send_signal(signal.SIGUSR2)
            while not modules_file.exists() and agent.poll() is None:
                time.sleep(0.01)
            time.sleep(0.1)  # the handler writes the file in one go, right after creating it
        finally:
            bare.kill()
            bare.wait()
            agent.send_signal(signal.SIGTERM)
            _, stderr = agent.communicate(timeout=30)
        held = set(modules_file.read_text().split())
        return agent_mb, bare_mb, parse_importtime(stderr), held
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rss_added_kib(module: str, repeat: int) -> float | None:
    """Median KiB that ``import module`` adds to a fresh interpreter (None: not installed)."""
    code = RSS_PROBE.format(module=module, block="sys.modules.setdefault('psycopg2', None)"
                            if module != "psycopg2" else "")
    samples = []
    for _ in range(repeat):
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            return None
        samples.append(int(out.stdout.strip()))
    return statistics.median(samples)


def startup_costs(repeat: int) -> dict:
    """Wall time, modules and total import time of the status client vs supervisorctl's."""
    root = Path(tempfile.mkdtemp(prefix="cb-imports-"))
    try:
        (root / "data").mkdir()
        team_file = root / "data" / "team.yaml"
        team_file.write_text(TEAM)
        runs: dict[str, dict[str, list]] = {}
        for _ in range(repeat):
            for name, code in (("coffee-team status", STATUS), ("supervisorctl", SUPERVISORCTL)):
                started = time.perf_counter()
                out = subprocess.run([PY, "-X", "importtime", "-c", code, str(team_file)],
                                     capture_output=True, text=True, cwd=ROOT,
                                     stdin=subprocess.DEVNULL)
                wall = time.perf_counter() - started
                times = parse_importtime(out.stderr)
                run = runs.setdefault(name, {"wall_s": [], "modules": [], "import_ms": []})
                run["wall_s"].append(wall)
                run["modules"].append(len(times))
                run["import_ms"].append(sum(t["self_us"] for t in times.values()) / 1000)
        return {name: {key: summary(values) for key, values in run.items()}
                for name, run in runs.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "imports.json"))
    args = parser.parse_args(argv)
    agent_mb, bare_mb, runs = [], [], []
    for _ in range(args.repeat):
        a, b, times, imported = idle_agent_run()
        agent_mb.append(a)
        bare_mb.append(b)
        runs.append(times)
    names = imported.intersection(*runs)
    timing = {name: {"self_us": statistics.median(r[name]["self_us"] for r in runs),
                     "cumulative_us": statistics.median(r[name]["cumulative_us"] for r in runs)}
              for name in names}
    slowest = sorted((n for n in names if n not in ("encodings", "site", "runpy")),
                     key=lambda n: -timing[n]["cumulative_us"])[:TOP]
    rows = []
    for name in dict.fromkeys([*slowest, *ALWAYS, *SHOULD_NOT]):
        added = rss_added_kib(name, args.repeat)
        rows.append({"module": name, "imported": name in imported,
                     "self_us": timing.get(name, {}).get("self_us"),
                     "cumulative_us": timing.get(name, {}).get("cumulative_us"),
                     "rss_added_kib": added})
    rows.sort(key=lambda r: (not r["imported"], -(r["cumulative_us"] or 0), r["module"]))
    doc = {
        "agent_rss_mb": summary(agent_mb), "bare_python_rss_mb": summary(bare_mb),
        "ratio_of_medians": statistics.median(agent_mb) / statistics.median(bare_mb),
        "target_agent_rss_mb": 20.0, "runs": args.repeat,
        "modules_imported": len(imported),
        "import_self_us_total": sum(timing[n]["self_us"] for n in names),
        "should_not_import": [m for m in SHOULD_NOT if m in imported],
        "table": rows,
        "status_startup": startup_costs(max(5, args.repeat)),
    }
    print(f"{'module':34} {'imported':>8} {'self µs':>9} {'cumul. µs':>10} {'RSS added':>10}")
    for r in rows:
        show = lambda v, unit="": "–" if v is None else f"{v:,.0f}{unit}"  # noqa: E731
        print(f"{r['module']:34} {'yes' if r['imported'] else 'no':>8} {show(r['self_us']):>9} "
              f"{show(r['cumulative_us']):>10} {show(r['rss_added_kib'], ' KiB'):>10}")
    print(f"\nidle agent RSS {statistics.median(agent_mb):.1f} MB (min {min(agent_mb):.1f}, max "
          f"{max(agent_mb):.1f}) vs bare sleeping python {statistics.median(bare_mb):.1f} MB, "
          f"same runs; {len(imported)} modules imported, "
          f"{doc['import_self_us_total'] / 1000:.0f} ms of import time; "
          f"should not import: {', '.join(doc['should_not_import']) or 'none'}")
    for name, cost in doc["status_startup"].items():
        print(f"{name}: start-up {cost['wall_s']['median'] * 1000:.0f} ms, "
              f"{cost['modules']['median']:.0f} modules, "
              f"{cost['import_ms']['median']:.0f} ms of imports (-X importtime, medians)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
