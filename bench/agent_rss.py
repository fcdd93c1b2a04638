"""Idle agents' memory without supervisord: a team of ``--agents`` plain agents (the boot
benchmark's: a Python handler, idle after its first periodic run) on SQLite, its config
generated and its database created first; ``--start`` of them started at once with the
command line of their generated ``[program:x]`` and supervisord's environment, then, once
each wrote its first heartbeat and 3 s passed (its first periodic run done), each one's
VmRSS, threads and CPU so far, next to a bare sleeping python started then.

    python bench/agent_rss.py [--agents 101] [--start 101] [--repeat 2]
                              [--checkout DIR ...] [--editable] [--json bench/results/agent_rss.json]

What is measured is what users run: each checkout's wheel installed in a throwaway venv
outside it (``wheel_env.py``, byte-compiled by pip), the bare python being that venv's.
``--editable``: this interpreter with the checkout first on ``PYTHONPATH``, byte-compiled
first (as measured before; an editable install's finder loads pathlib and more into every
python of its venv, the bare one too). Several ``--checkout`` directories (another copy of
the repository, e.g. ``git worktree`` of the code before a change) are measured in turn,
run by run: a before and after pair in one session. Quicker and quieter than the boot benchmark's RSS row
(``lifecycle_boot.py``: the median of 101 agents after a staggered boot under supervisord);
the agents are the same processes once idle.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path)

import argparse
import compileall
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wheel_env

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
SETTLE = 3.0  # seconds after the last first heartbeat: past every first periodic run


def team_text(n: int, groups: int = 10) -> str:
    per = max(1, n // groups)
    lines = ["team:", "  heartbeat_interval: 30", "  heartbeat_stale_after: 300", "agents:"]
    for i in range(n):
        lines += [f"  a{i:03d}:", f"    priority: {min(i // per, groups - 1)}",
                  "    check_interval: 86400", "    handler: coffee_team.agent.demo:handle",
                  "    options: {work_seconds: 0.01}"]
    return "\n".join(lines) + "\n"


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":", 1) for line in f)


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(checkout: Path, python: str, env: dict, agents: int, start: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="cb-rss-"))
    procs: list[tuple[str, subprocess.Popen]] = []
    bare = None
    try:
        (root / "data").mkdir()
        team_file = root / "data" / "team.yaml"
        team_file.write_text(team_text(agents))
        run = dict(cwd=root, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
        subprocess.run([python, "-m", "coffee_team", "--team", str(team_file), "gen-config"], **run)
        subprocess.run([python, "-c", "import sys\nfrom coffee_team.queue import MessageQueue\n"
                        "from coffee_team.team import load_team\n"
                        "MessageQueue.from_team(load_team(sys.argv[1])).close()",
                        str(team_file)], **run)
        status = root / "data" / "agent_status"
        names = [f"a{i:03d}" for i in range(0, agents, max(1, agents // start))][:start]
        for name in names:
            conf = (root / "supervisord.conf.d" / f"agent-{name}.conf").read_text()
            line = next(x for x in conf.splitlines() if x.startswith("command="))
            argv = shlex.split(line[len("command="):].replace(
                "%(here)s", str(root / "supervisord.conf.d")).replace("%%", "%"))
            procs.append((name, subprocess.Popen(
                argv, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(env, SUPERVISOR_ENABLED="1", SUPERVISOR_PROCESS_NAME=name,
                         SUPERVISOR_GROUP_NAME=name, PYTHONUNBUFFERED="1"))))
        deadline = time.monotonic() + 120
        for name, proc in procs:
            while not (status / f"{name}_status.json").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: no first heartbeat (exit {proc.poll()})")
                time.sleep(0.02)
        bare = subprocess.Popen([python, "-c", "import time; time.sleep(1e9)"], env=env,
                                stdin=subprocess.DEVNULL)
        time.sleep(SETTLE)
        rss, threads, cpu = [], [], []
        for _, proc in procs:
            st = proc_status(proc.pid)
            rss.append(int(st["VmRSS"].split()[0]) / 1024)
            threads.append(int(st["Threads"]))
            cpu.append(proc_cpu(proc.pid))
        bare_rss = int(proc_status(bare.pid)["VmRSS"].split()[0]) / 1024
        return {"checkout": str(checkout), "agents": agents, "started": len(procs),
                "rss_mb": statistics.median(rss), "rss_min_mb": min(rss),
                "rss_max_mb": max(rss), "threads": statistics.median(threads),
                "cpu_s": statistics.median(cpu), "bare_python_rss_mb": bare_rss}
    finally:
        if bare is not None:
            bare.kill()
            bare.wait()
        for _, proc in procs:
            proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def measure_all(checkouts: list[Path], args, workdir: Path) -> dict[str, list[dict]]:
    """Each checkout's interpreter and environment, then the runs, alternated run by run."""
    how: dict[Path, tuple[str, dict]] = {}
    for i, checkout in enumerate(checkouts):
        if args.editable:
            compileall.compile_dir(str(checkout / "coffee_team"), quiet=1,
                                   rx=re.compile(r"/examples/"))
            env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
            how[checkout] = (PY, dict(env, PYTHONPATH=str(checkout)))
        else:
            how[checkout] = (str(wheel_env.install(checkout, workdir / str(i))),
                             wheel_env.clean_env())
    runs: dict[str, list[dict]] = {str(c): [] for c in checkouts}
    for r in range(args.repeat):
        for checkout in (checkouts if r % 2 == 0 else checkouts[::-1]):
            found = measure(checkout, *how[checkout], args.agents, args.start or args.agents)
            runs[str(checkout)].append(found)
            print(json.dumps(found), flush=True)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=101)
    parser.add_argument("--start", type=int, default=None, help="default: every agent")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--checkout", action="append", default=None)
    parser.add_argument("--editable", action="store_true",
                        help="each checkout on PYTHONPATH of this interpreter, not a wheel")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "agent_rss.json"))
    args = parser.parse_args(argv)
    checkouts = [Path(c).resolve() for c in (args.checkout or [str(ROOT)])]
    workdir = Path(tempfile.mkdtemp(prefix="cb-wheel-"))
    try:
        runs = measure_all(checkouts, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = {}
    for checkout, found in runs.items():
        rss = [f["rss_mb"] for f in found]
        bare = [f["bare_python_rss_mb"] for f in found]
        doc[checkout] = {"install": "editable (PYTHONPATH)" if args.editable
                         else "wheel in a new venv", "rss_mb_median_of_runs": statistics.median(rss),
                         "bare_python_rss_mb": statistics.median(bare), "runs": found}
        print(f"{checkout}: idle agent RSS {statistics.median(rss):.2f} MB (runs "
              f"{', '.join(f'{x:.2f}' for x in rss)}), threads "
              f"{found[-1]['threads']:g}, bare python {statistics.median(bare):.2f} MB")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
