"""One agent's start-up: exec → its first heartbeat file, next to a bare python started and
writing a file the same way and to the floor (the same, importing the standard modules any
SQLite agent needs), interleaved run by run; then where the agent's time goes.

    python bench/startup_bench.py [--repeat 15] [--checkout DIR ...] [--editable]
                                  [--json bench/results/startup.json]

What is measured is what users run: a wheel of the checkout installed in a throwaway venv
outside it (``wheel_env.py``: built once per run, byte-compiled by pip). ``--editable``
measures this benchmark's own interpreter with the checkout on ``PYTHONPATH`` instead (an
editable install: its finder's .pth loads pathlib, urllib.parse, ipaddress… into every
python of the venv at ``site``, anchors included, which flatters the ratio). Several
``--checkout`` (e.g. a ``git worktree`` of the code before a change) are measured in the
same run, each with its own venv, their agents interleaved with the anchors; the anchors run
on the first one's interpreter (every venv has the same base interpreter).

1. ``exec → first heartbeat``: a ``command:`` agent (``command: [true]``) in a throwaway
   project on SQLite, its config generated (``coffee-team gen-config``) and its database
   created first (as ``coffee-team start`` and the watchdog do before agents launch), started
   with the exact command line of its generated ``[program:x]`` and the environment
   supervisord gives it (``SUPERVISOR_ENABLED``, ``PYTHONUNBUFFERED``, the project as cwd).
   The clock stops when the heartbeat file appears (inotify, no polling). The anchors: the
   same interpreter started as ``python -c`` that writes a JSON file into the same directory
   the way the agent does (a temp file renamed over the name): ``bare`` imports nothing more,
   ``floor`` first imports what any SQLite agent needs (``FLOOR_IMPORTS``). Each run is
   followed by SIGTERM and a wait, so runs never overlap; agents and anchors alternate, the
   order rotated per repeat.
   CPU to that point (user + system, the interpreter's start included) is what a boot of many
   agents pays on few cores, whatever else the machine does: the wrapper below reads it for
   the agent (run in the same rotation), the anchors write it into their file.
2. Phases (``phases``): the same agent through a wrapper that stamps CLOCK_MONOTONIC at the
   wrapper's first line and around each step of ``runtime.main``: interpreter + site, imports
   of the runtime, reading the team, data dirs + lock, the Agent (its runner), opening the
   queue, requeueing orphans, the first heartbeat. Median of the runs.
3. ``-X importtime`` of the real command line: the modules and the slowest imports.

Every figure is min / median / max of ``--repeat`` runs. Writes JSON: the first checkout's
figures at the top level, every checkout's under ``checkouts``.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path)

import argparse
import json
import os
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
from startup_parts import PHASE_LABEL, PHASE_ORDER, PHASES, Watch

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TEAM = """team:
  heartbeat_interval: 30
  heartbeat_stale_after: 300
agents:
  worker:
    check_interval: 86400
    command: [\"true\"]
"""
# The anchors: an interpreter writing a heartbeat-like file as write_heartbeat does; the floor
# first imports the standard modules every SQLite agent needs, each for something it cannot
# go without: sqlite3 (the queue), json (the heartbeat file, task contents and results),
# threading (the beats thread keeps the heartbeat while the loop waits on the database),
# signal (SIGTERM: stop between tasks), ctypes (prctl's PDEATHSIG: no orphan when supervisord
# dies; malloc_trim), fcntl (the agent's singleton lock), select and _socket (the wake-up
# datagrams). Not pathlib, typing or dataclasses: conveniences of coffee_team's code, not
# needs of an agent.
FLOOR_IMPORTS = ("sqlite3", "json", "threading", "signal", "ctypes", "fcntl", "select",
                 "_socket")
BARE = """
import json, os, sys, time
d, name = sys.argv[1], sys.argv[2]
text = json.dumps({"agent": "bare", "pid": os.getpid(), "last_heartbeat": time.time(),
                   "cpu": time.process_time()}, indent=1)
tmp = os.path.join(d, ".bare.%d.tmp" % os.getpid())
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, text.encode())
os.close(fd)
os.replace(tmp, os.path.join(d, name))
time.sleep(1e9)
"""
FLOOR = BARE.replace("import json, os, sys, time",
                     "import os, sys, time, " + ", ".join(FLOOR_IMPORTS), 1)
def compile_sources(checkout: Path) -> None:
    """Byte-compile coffee_team as a pip install does (this machine sets
    PYTHONDONTWRITEBYTECODE: a checkout on PYTHONPATH would be compiled again at every start)."""
    import compileall
    import re
    # not examples/: a project's files, copied by `coffee-team init`, never imported from here
    compileall.compile_dir(str(checkout / "coffee_team"), quiet=1, rx=re.compile(r"/examples/"))


def summary(values) -> dict:
    values = [float(v) for v in values]
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values), "samples": [round(v, 5) for v in values]}


class Subject:
    """One checkout's agent: its interpreter (a wheel's venv, or ours with the checkout on
    PYTHONPATH), its project, its command line and environment, its samples."""

    def __init__(self, checkout: Path, python: str, env: dict[str, str]):
        self.checkout, self.python, self.env = checkout, python, env
        self.root, self.argv, self.env = make_project(python, env)
        self.starts: list[float] = []
        self.cpu: list[float] = []
        self.stamps: list[dict] = []


def make_project(python: str, env: dict) -> tuple[Path, list[str], dict[str, str]]:
    """A project with the worker's config generated and its database created: its root, the
    agent's argv as supervisord runs it, the environment supervisord gives it."""
    root = Path(tempfile.mkdtemp(prefix="cb-start-"))
    (root / "data").mkdir()
    team_file = root / "data" / "team.yaml"
    team_file.write_text(TEAM)
    run = dict(cwd=root, env=env, check=True, stdin=subprocess.DEVNULL)
    subprocess.run([python, "-m", "coffee_team", "--team", str(team_file), "gen-config"],
                   stdout=subprocess.DEVNULL, **run)
    subprocess.run([python, "-c", "import sys\nfrom coffee_team.queue import MessageQueue\n"
                    "from coffee_team.team import load_team\n"
                    "MessageQueue.from_team(load_team(sys.argv[1])).close()", str(team_file)],
                   **run)
    conf = (root / "supervisord.conf.d" / "agent-worker.conf").read_text()
    line = next(x for x in conf.splitlines() if x.startswith("command="))[len("command="):]
    argv = shlex.split(line.replace("%(here)s", str(root / "supervisord.conf.d"))
                       .replace("%%", "%"))
    (root / "data" / "agent_status").mkdir(parents=True, exist_ok=True)
    return root, argv, dict(env, SUPERVISOR_ENABLED="1", SUPERVISOR_PROCESS_NAME="worker",
                            SUPERVISOR_GROUP_NAME="worker", PYTHONUNBUFFERED="1")


def timed_start(argv: list[str], env: dict, cwd: Path, watch: Watch, name: str,
                stderr=subprocess.DEVNULL) -> float:
    """Seconds from just before exec to ``name`` written; the process is then stopped."""
    watch.drain()
    (watch.directory / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        return watch.wait(name, 30, proc) - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_times(subjects: list[Subject], repeat: int) -> dict:
    """Every subject's agent (timed, then through the phase wrapper for its CPU) and the two
    anchors, in one rotation per repeat, the order rotated each time."""
    anchor_dir = Path(tempfile.mkdtemp(prefix="cb-anchor-"))
    watches = {s.root: Watch(s.root / "data" / "agent_status") for s in subjects}
    watches[anchor_dir] = Watch(anchor_dir)
    first = subjects[0]
    anchors = {"bare": [], "floor": []}
    anchor_cpu = {"bare": [], "floor": []}

    def run_anchor(label: str) -> None:
        name = f"{label}_status.json"
        code = BARE if label == "bare" else FLOOR
        anchors[label].append(timed_start([first.python, "-c", code, str(anchor_dir), name],
                                          first.env, anchor_dir, watches[anchor_dir], name))
        anchor_cpu[label].append(json.loads((anchor_dir / name).read_text())["cpu"])

    def run_agent(subject: Subject) -> None:
        subject.starts.append(timed_start(subject.argv, subject.env, subject.root,
                                          watches[subject.root], "worker_status.json"))

    def run_phases(subject: Subject) -> None:
        stamps = phase_run(subject)
        subject.stamps.append(stamps)
        subject.cpu.append(stamps["cpu"])

    steps = [lambda: run_anchor("bare"), lambda: run_anchor("floor")]
    for subject in subjects:
        steps += [lambda s=subject: run_agent(s), lambda s=subject: run_phases(s)]
    try:
        for step in steps:  # warm the page cache; not counted
            step()
        for values in [*anchors.values(), *anchor_cpu.values()]:
            values.clear()
        for subject in subjects:
            subject.starts.clear(), subject.cpu.clear(), subject.stamps.clear()
        for r in range(repeat):
            k = r % len(steps)
            for step in steps[k:] + steps[:k]:
                step()
        imports = {s: import_profile(s) for s in subjects}
    finally:
        for watch in watches.values():
            watch.close()
        shutil.rmtree(anchor_dir, ignore_errors=True)
    bare, floor = statistics.median(anchors["bare"]), statistics.median(anchors["floor"])
    bare_cpu = statistics.median(anchor_cpu["bare"])
    floor_cpu = statistics.median(anchor_cpu["floor"])
    per: dict[str, dict] = {}
    for s in subjects:
        took, cpu = statistics.median(s.starts), statistics.median(s.cpu)
        per[str(s.checkout)] = {
            "agent_s": summary(s.starts), "agent_cpu_s": summary(s.cpu),
            "ratio_of_medians": took / bare, "cpu_ratio_of_medians": cpu / bare_cpu,
            "ratio_to_floor": took / floor, "cpu_ratio_to_floor": cpu / floor_cpu,
            "command": " ".join(shlex.quote(a) for a in s.argv).replace(str(s.root), "$PROJECT"),
            "phases": phases_of(s.stamps), "imports": imports[s]}
    return {**per[str(first.checkout)], "target_ratio": 2.0, "runs": repeat,
            "bare_python_s": summary(anchors["bare"]), "bare_python_cpu_s":
            summary(anchor_cpu["bare"]), "floor_python_s": summary(anchors["floor"]),
            "floor_python_cpu_s": summary(anchor_cpu["floor"]), "floor_imports": FLOOR_IMPORTS,
            "checkouts": per}


def phase_run(subject: Subject) -> dict:
    """One start through the wrapper: its stamps (CLOCK_MONOTONIC, t0 just before exec)."""
    argv, root = subject.argv, subject.root
    i = argv.index("-m")
    out = root / "phases.json"
    out.unlink(missing_ok=True)
    cmd = argv[:i] + ["-c", PHASES, str(out)] + argv[i + 2:]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=root, env=subject.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not out.exists() or not out.stat().st_size:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"phases: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return dict(json.loads(out.read_text()), t0=t0)


def phases_of(runs: list[dict]) -> dict:
    """The seconds each phase took (median over the runs)."""
    found: dict[str, list[float]] = {p: [] for p in PHASE_ORDER}
    for stamps in runs:
        previous = stamps["t0"]
        for phase in PHASE_ORDER:
            if phase in stamps:
                found[phase].append(stamps[phase] - previous)
                previous = stamps[phase]
        found.setdefault("total", []).append(stamps["heartbeat"] - stamps["t0"])
    return {p: summary(v) for p, v in found.items() if v}


def import_profile(subject: Subject, top: int = 15) -> dict:
    """``-X importtime`` of the real command line up to its first heartbeat."""
    argv, root, env = subject.argv, subject.root, subject.env
    status = root / "data" / "agent_status"
    (status / "worker_status.json").unlink(missing_ok=True)
    cmd = [argv[0], "-X", "importtime"] + argv[1:]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (status / "worker_status.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    found = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        found.setdefault(name.strip(), (int(self_us), int(cumulative_us), depth))
    tops = sorted(((n, c) for n, (s, c, d) in found.items() if d == 0), key=lambda x: -x[1])
    return {"modules": len(found), "self_ms_total": sum(s for s, _, _ in found.values()) / 1000,
            "top_level_ms": {n: c / 1000 for n, c in tops[:top]}}


def subjects_for(checkouts: list[Path], editable: bool, workdir: Path) -> list[Subject]:
    if editable:  # our interpreter, each checkout first on the path, byte-compiled first
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        for checkout in checkouts:
            compile_sources(checkout)
        return [Subject(c, PY, dict(env, PYTHONPATH=str(c))) for c in checkouts]
    subjects = []
    for i, checkout in enumerate(checkouts):
        python = wheel_env.install(checkout, workdir / str(i))
        subjects.append(Subject(checkout, str(python), wheel_env.clean_env()))
    return subjects


def ms(s: dict) -> str:
    return f"{s['median'] * 1000:.1f} ms ({s['min'] * 1000:.1f}–{s['max'] * 1000:.1f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--checkout", action="append", default=None,
                        help="a checkout to measure (repeatable; default: this one)")
    parser.add_argument("--editable", action="store_true",
                        help="the checkout on PYTHONPATH of this interpreter, not a wheel")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = parser.parse_args(argv)
    checkouts = [Path(c).resolve() for c in (args.checkout or [str(ROOT)])]
    workdir = Path(tempfile.mkdtemp(prefix="cb-wheel-"))
    subjects: list[Subject] = []
    try:
        subjects = subjects_for(checkouts, args.editable, workdir)
        doc = start_times(subjects, args.repeat)
    finally:
        for s in subjects:
            shutil.rmtree(s.root, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    doc["install"] = "editable (PYTHONPATH)" if args.editable else "wheel in a new venv"
    b, f = doc["bare_python_s"], doc["floor_python_s"]
    bc, fc = doc["bare_python_cpu_s"], doc["floor_python_cpu_s"]
    print(f"{doc['install']}, {args.repeat} runs each, interleaved; exec → first heartbeat "
          f"file, CPU to it:\n  bare python {ms(b)}, CPU {ms(bc)}\n  floor (imports "
          f"{', '.join(FLOOR_IMPORTS)}) {ms(f)}, CPU {ms(fc)}")
    for checkout, c in doc["checkouts"].items():
        print(f"  agent of {checkout}: {ms(c['agent_s'])}, CPU {ms(c['agent_cpu_s'])}\n"
              f"    vs bare {c['ratio_of_medians']:.2f}× (CPU {c['cpu_ratio_of_medians']:.2f}×; "
              f"goal ≤ 2×), vs floor {c['ratio_to_floor']:.2f}× (CPU "
              f"{c['cpu_ratio_to_floor']:.2f}×)")
        for phase, s in c["phases"].items():
            print(f"    {PHASE_LABEL.get(phase, phase):45} {s['median'] * 1000:7.1f} ms "
                  f"({s['min'] * 1000:.1f}–{s['max'] * 1000:.1f})")
        im = c["imports"]
        print(f"    -X importtime: {im['modules']} modules, {im['self_ms_total']:.0f} ms; top: "
              + ", ".join(f"{n} {v:.1f}" for n, v in im["top_level_ms"].items()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
