"""One agent's start-up: exec → its first heartbeat file, next to a bare python started and
writing a file the same way, interleaved run by run; then where the agent's time goes.

    python bench/startup_bench.py [--repeat 15] [--json bench/results/startup.json]

1. ``exec → first heartbeat``: a ``command:`` agent (``command: [true]``) in a throwaway
   project on SQLite, its config generated (``coffee-team gen-config``) and its database
   created first (as ``coffee-team start`` and the watchdog do before agents launch), started
   with the exact command line of its generated ``[program:x]`` and the environment
   supervisord gives it (``SUPERVISOR_ENABLED``, ``PYTHONUNBUFFERED``, the project as cwd).
   The clock stops when the heartbeat file appears (inotify, no polling). The anchor: the same
   interpreter started as ``python -c`` that writes a JSON file into the same directory the
   way the agent does (a temp file renamed over the name). Each run is followed by SIGTERM and
   a wait, so runs never overlap; agent and anchor alternate.
   CPU to that point (user + system, the interpreter's start included) is what a boot of many
   agents pays on few cores, whatever else the machine does: the wrapper below reads it for
   the agent, the anchor writes it into its file.
2. Phases (``phases``): the same agent through a wrapper that stamps CLOCK_MONOTONIC at the
   wrapper's first line and around each step of ``runtime.main``: interpreter + site, imports
   of the runtime, reading the team, data dirs + lock, the Agent (its runner), opening the
   queue, requeueing orphans, the first heartbeat. Median of the runs.
3. ``-X importtime`` of the real command line: the modules and the slowest imports.

Every figure is min / median / max of ``--repeat`` runs. Writes JSON.
"""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path)

import argparse
import ctypes
import json
import os
import select
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
# The anchor: a bare interpreter writing a heartbeat-like file as write_heartbeat does.
BARE = """
import json, os, sys, time
d = sys.argv[1]
text = json.dumps({"agent": "bare", "pid": os.getpid(), "last_heartbeat": time.time(),
                   "cpu": time.process_time()}, indent=1)
tmp = os.path.join(d, ".bare.%d.tmp" % os.getpid())
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, text.encode())
os.close(fd)
os.replace(tmp, os.path.join(d, "bare_status.json"))
time.sleep(1e9)
"""
# runtime.main with CLOCK_MONOTONIC stamps around its steps; prints them on the first beat.
PHASES = """
import time
t_start = time.monotonic()
import sys
stamps = {"interpreter": t_start}
try:  # what __main__ does first for an agent's command line
    from coffee_team.agent.lean import defer
    defer()
except ImportError:  # a checkout from before it
    pass
import coffee_team.agent.runtime as rt
try:
    import coffee_team.team.snapshot as loader
except ImportError:  # a checkout from before the snapshot: runtime.main reads the YAML
    import coffee_team.team as loader
import coffee_team.queue as queue_pkg
stamps["imports"] = time.monotonic()
def after(label, fn):
    def wrapped(*a, **k):
        try:
            return fn(*a, **k)
        finally:
            stamps.setdefault(label, time.monotonic())
    return wrapped
def before(label, fn):
    def wrapped(*a, **k):
        stamps.setdefault(label, time.monotonic())
        return fn(*a, **k)
    return wrapped
loader.load_team = after("team", loader.load_team)
rt.agent_lock = after("lock", rt.agent_lock)
init = rt.Agent.__init__
rt.Agent.__init__ = after("agent", init)
MQ = queue_pkg.MessageQueue
MQ.from_team = classmethod(after("queue", MQ.from_team.__func__))
MQ.requeue_agent = after("requeue", MQ.requeue_agent)
import coffee_team.heartbeat as hb
write = hb.write_heartbeat
def first_beat(*a, **k):
    write(*a, **k)
    if "heartbeat" not in stamps:
        stamps["heartbeat"] = time.monotonic()
        stamps["cpu"] = time.process_time()  # this process's CPU, its interpreter's start too
        with open(out, "w") as f:
            f.write(__import__("json").dumps(stamps))
for module in list(sys.modules.values()):  # wherever the agent's code imported it from
    if getattr(module, "__name__", "").startswith("coffee_team") \
            and getattr(module, "write_heartbeat", None) is write:
        module.write_heartbeat = first_beat
out = sys.argv.pop(1)  # then: --team T agent run NAME
sys.exit(rt.main(sys.argv[2], sys.argv[5]))
"""
PHASE_ORDER = ("interpreter", "imports", "team", "lock", "agent", "queue", "requeue",
               "heartbeat")
PHASE_LABEL = {"interpreter": "exec → first line (interpreter, site)",
               "imports": "imports: the runtime and the queue",
               "team": "read the team (snapshot, else YAML)",
               "lock": "data dirs, PDEATHSIG, the agent's lock",
               "agent": "Agent(): its runner",
               "queue": "open the queue",
               "requeue": "requeue orphans",
               "heartbeat": "→ first heartbeat written"}

IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
_libc = ctypes.CDLL(None, use_errno=True)


class Watch:
    """inotify on one directory: ``wait(name)`` returns the perf_counter when ``name`` was
    written or renamed into it (no polling, so no CPU taken from the process timed)."""

    def __init__(self, directory: Path):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or _libc.inotify_add_watch(self.fd, os.fsencode(directory),
                                                  IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def drain(self) -> None:
        """Forget earlier events (an agent writes its heartbeat once more as it stops)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def wait(self, name: str, timeout: float, proc: subprocess.Popen) -> float:
        deadline = time.monotonic() + timeout
        want = os.fsencode(name)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"no {name} within {timeout}s (exit {proc.poll()}): "
                                   f"{proc.stderr.read() if proc.stderr else ''}")
            if not select.select([self.fd], [], [], min(left, 0.5))[0]:
                continue
            seen = time.perf_counter()
            data = os.read(self.fd, 65536)
            i = 0
            while i < len(data):
                _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, i)
                file = data[i + 16:i + 16 + size].rstrip(b"\0")
                i += 16 + size
                if file == want:
                    return seen

    def close(self) -> None:
        os.close(self.fd)


def compile_sources() -> None:
    """Byte-compile coffee_team as a pip install does (this machine sets
    PYTHONDONTWRITEBYTECODE: an editable checkout would be compiled again at every start)."""
    import compileall
    import re
    # not examples/: a project's files, copied by `coffee-team init`, never imported from here
    compileall.compile_dir(str(ROOT / "coffee_team"), quiet=1, rx=re.compile(r"/examples/"))


def summary(values) -> dict:
    values = [float(v) for v in values]
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "max": max(values), "samples": [round(v, 5) for v in values]}


def make_project() -> tuple[Path, list[str], dict[str, str]]:
    """A project with the worker's config generated and its database created: its root, the
    agent's argv as supervisord runs it, the environment supervisord gives it."""
    root = Path(tempfile.mkdtemp(prefix="cb-start-"))
    (root / "data").mkdir()
    team_file = root / "data" / "team.yaml"
    team_file.write_text(TEAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    subprocess.run([PY, "-m", "coffee_team", "--team", str(team_file), "gen-config"], cwd=root,
                   env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    subprocess.run([PY, "-c", "import sys\nfrom coffee_team.queue import MessageQueue\n"
                    "from coffee_team.team import load_team\n"
                    "MessageQueue.from_team(load_team(sys.argv[1])).close()", str(team_file)],
                   cwd=root, env=env, check=True, stdin=subprocess.DEVNULL)
    conf = (root / "supervisord.conf.d" / "agent-worker.conf").read_text()
    line = next(x for x in conf.splitlines() if x.startswith("command="))[len("command="):]
    argv = shlex.split(line.replace("%(here)s", str(root / "supervisord.conf.d"))
                       .replace("%%", "%"))
    env.update(SUPERVISOR_ENABLED="1", SUPERVISOR_PROCESS_NAME="worker",
               SUPERVISOR_GROUP_NAME="worker", PYTHONUNBUFFERED="1")
    return root, argv, env


def timed_start(argv: list[str], env: dict, cwd: Path, watch: Watch, name: str,
                stderr=subprocess.DEVNULL) -> float:
    """Seconds from just before exec to ``name`` written; the process is then stopped."""
    watch.drain()
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


def start_times(repeat: int) -> dict:
    root, argv, env = make_project()
    status = root / "data" / "agent_status"
    status.mkdir(parents=True, exist_ok=True)
    watch = Watch(status)
    bare = [PY, "-c", BARE, str(status)]
    agent_s, bare_s, bare_cpu = [], [], []
    try:
        timed_start(argv, env, root, watch, "worker_status.json")  # warm the page cache
        timed_start(bare, env, root, watch, "bare_status.json")
        for r in range(repeat):
            pair = [("agent", argv, "worker_status.json"), ("bare", bare, "bare_status.json")]
            for label, cmd, name in (pair if r % 2 == 0 else pair[::-1]):
                (status / name).unlink(missing_ok=True)
                took = timed_start(cmd, env, root, watch, name)
                (agent_s if label == "agent" else bare_s).append(took)
                if label == "bare":
                    bare_cpu.append(json.loads((status / name).read_text())["cpu"])
        phases = phase_times(root, argv, env, repeat)
        imports = import_profile(root, argv, env)
    finally:
        watch.close()
        shutil.rmtree(root, ignore_errors=True)
    ratio = statistics.median(agent_s) / statistics.median(bare_s)
    agent_cpu = phases.pop("cpu")
    return {"agent_s": summary(agent_s), "bare_python_s": summary(bare_s),
            "ratio_of_medians": ratio, "target_ratio": 2.0, "runs": repeat,
            "agent_cpu_s": agent_cpu, "bare_python_cpu_s": summary(bare_cpu),
            "cpu_ratio_of_medians": agent_cpu["median"] / statistics.median(bare_cpu),
            "command": " ".join(shlex.quote(a) for a in argv).replace(str(root), "$PROJECT"),
            "phases": phases, "imports": imports}


def phase_times(root: Path, argv: list[str], env: dict, repeat: int) -> dict:
    """The wrapper's stamps, as the seconds each phase took (median over the runs)."""
    i = argv.index("-m")
    runs: dict[str, list[float]] = {p: [] for p in PHASE_ORDER}
    out = root / "phases.json"
    for _ in range(repeat):
        out.unlink(missing_ok=True)
        cmd = argv[:i] + ["-c", PHASES, str(out)] + argv[i + 2:]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not out.exists() or not out.stat().st_size:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"phases: {proc.stderr.read()[-2000:]}")
            time.sleep(0.01)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        stamps = json.loads(out.read_text())
        previous = t0
        for phase in PHASE_ORDER:
            if phase in stamps:
                runs[phase].append(stamps[phase] - previous)
                previous = stamps[phase]
        runs.setdefault("total", []).append(stamps["heartbeat"] - t0)
        runs.setdefault("cpu", []).append(stamps["cpu"])
    return {p: summary(v) for p, v in runs.items() if v}


def import_profile(root: Path, argv: list[str], env: dict, top: int = 15) -> dict:
    """``-X importtime`` of the real command line up to its first heartbeat."""
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = parser.parse_args(argv)
    compile_sources()
    doc = start_times(args.repeat)
    a, b = doc["agent_s"], doc["bare_python_s"]
    print(f"exec → first heartbeat: agent {a['median'] * 1000:.1f} ms (min {a['min'] * 1000:.1f}, "
          f"max {a['max'] * 1000:.1f}) vs bare python {b['median'] * 1000:.1f} ms (min "
          f"{b['min'] * 1000:.1f}, max {b['max'] * 1000:.1f}): {doc['ratio_of_medians']:.2f}× "
          f"(goal ≤ 2×), {args.repeat} runs each, interleaved")
    ac, bc = doc["agent_cpu_s"], doc["bare_python_cpu_s"]
    print(f"CPU to the first heartbeat: agent {ac['median'] * 1000:.1f} ms (min "
          f"{ac['min'] * 1000:.1f}) vs bare python {bc['median'] * 1000:.1f} ms (min "
          f"{bc['min'] * 1000:.1f}): {doc['cpu_ratio_of_medians']:.2f}×")
    for phase, s in doc["phases"].items():
        print(f"  {PHASE_LABEL.get(phase, phase):45} {s['median'] * 1000:7.1f} ms "
              f"({s['min'] * 1000:.1f}–{s['max'] * 1000:.1f})")
    im = doc["imports"]
    print(f"  -X importtime: {im['modules']} modules, {im['self_ms_total']:.0f} ms; top: "
          + ", ".join(f"{n} {ms:.1f}" for n, ms in im["top_level_ms"].items()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
