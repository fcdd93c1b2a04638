"""Output streaming benchmark: a command's output through the agent's CommandRunner into a
log file, against `cat` into a file; and the agent's RSS while a task prints 1 GB.

    python bench/output_bench.py [--quick] [--json bench/results/output.json]

throughput  the same file of 100-byte lines (256 MB; --quick 32 MB) printed by `cat`: once
            `cat data > log` (the baseline), once `cat data | cat > log` (a pipe, as the
            runner reads: no in-kernel copy), once through CommandRunner (tagging every line
            with the task id, scanning for the result) into a log file. 3 runs each (--quick 2).
rss         a fresh process that imports what an agent imports (agent, queue) runs
            one task whose command prints 1 GB (--quick 128 MB) of lines; its peak RSS
            (ru_maxrss) against the same process before the task.
supervisord the whole path: a real agent under a real supervisord runs a task that prints
            256 MB (--quick 32 MB); claim-to-completion rate into the rotated agent log, and
            the agent's RSS sampled every 0.1 s meanwhile.

Each runner measurement is a fresh subprocess, so one run's memory never flatters the next.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LINE = b"x" * 99 + b"\n"

# Runs in a fresh interpreter: the agent's imports, then one task through CommandRunner.
RUNNER = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])
import coffee_team.agent.runtime, coffee_team.queue  # what every agent process has loaded
from coffee_team.handlers import CommandRunner, HandlerContext
from coffee_team.output import FdSink
argv, log_path = json.loads(sys.argv[2]), sys.argv[3]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
runner = CommandRunner(tuple(argv), sink=FdSink(fd))
ctx = HandlerContext(agent="bench", options={}, on_progress=lambda message: None)
t0 = time.perf_counter()
result = runner({"id": 42, "type": "bench", "content": None}, ctx)
seconds = time.perf_counter() - t0
os.close(fd)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "result": result, "rss_before_mb": before / 1024,
                  "rss_peak_mb": peak / 1024}))
"""

# Prints SIZE bytes of 100-byte lines as fast as Python can, then a JSON result line.
PRINTER = ("import sys; size = int(sys.argv[1]); block = b'x' * 99 + b'\\n'; "
           "block *= 655; out = sys.stdout.buffer; n = 0\n"
           "while n < size: out.write(block); n += len(block)\n"
           "out.write(b'{\"printed\": %d}\\n' % n)")


def make_data(path: Path, size: int) -> None:
    block = LINE * 10000
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(b'{"done": true}\n')


def run_runner(argv: list[str], log_path: Path) -> dict:
    out = subprocess.run([PY, "-c", RUNNER, str(ROOT), json.dumps(argv), str(log_path)],
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout)


def stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "samples": [round(v, 4) for v in values]}


def throughput(work: Path, size: int, runs: int) -> dict:
    data, log = work / "data", work / "out.log"
    make_data(data, size)
    total = data.stat().st_size
    cat_mb_s, pipe_mb_s, runner_mb_s = [], [], []
    for _ in range(runs):  # interleaved, so a busy moment hits all alike
        t0 = time.perf_counter()
        with open(log, "wb") as f:
            subprocess.run(["cat", str(data)], stdout=f, check=True)
        cat_mb_s.append(total / 2**20 / (time.perf_counter() - t0))
        # cat > file may copy in the kernel (copy_file_range); through a pipe, as the runner
        # reads, it cannot: the fairer baseline for the runner's own cost.
        t0 = time.perf_counter()
        subprocess.run(f"cat '{data}' | cat > '{log}'", shell=True, check=True)
        pipe_mb_s.append(total / 2**20 / (time.perf_counter() - t0))
        run = run_runner(["cat", str(data)], log)
        assert run["result"] == {"done": True}, run
        runner_mb_s.append(total / 2**20 / run["seconds"])
    logged = log.stat().st_size
    log.unlink()
    data.unlink()
    return {"bytes": total, "cat_mb_s": stats(cat_mb_s), "cat_pipe_mb_s": stats(pipe_mb_s),
            "runner_mb_s": stats(runner_mb_s),
            "log_bytes_per_output_byte": round(logged / total, 3)}


def rss(work: Path, size: int) -> dict:
    run = run_runner([PY, "-c", PRINTER, str(size)], Path(os.devnull))
    assert run["result"]["printed"] >= size, run
    return {"bytes": size, "rss_before_mb": round(run["rss_before_mb"], 1),
            "rss_peak_mb": round(run["rss_peak_mb"], 1), "seconds": round(run["seconds"], 2)}


def through_supervisord(size: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from lifecycle_bench import Project  # the same throwaway-project helper
    proj = Project("cb-out-")
    try:
        (proj.root / "print.py").write_text(PRINTER)
        proj.write_team({"chatty": {"command": [PY, str(proj.root / "print.py"), str(size)],
                                    "check_interval": 3600}}, heartbeat_interval=1,
                        heartbeat_stale_after=3, health_check_interval=1, start_seconds=1)
        proj.boot()
        proj.wait_all(["chatty"])
        pid, peak = proj.infos()["chatty"]["pid"], 0
        with proj.queue() as q:
            task_id = q.send("bench", "chatty", "print")
            while (row := next(t for t in q.list_tasks(agent="chatty", limit=5)
                               if t["id"] == task_id))["status"] not in ("completed", "failed"):
                try:
                    peak = max(peak, psutil.Process(pid).memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.1)
        assert row["status"] == "completed", row
        seconds = row["completed_at"] - row["claimed_at"]
        return {"bytes": size, "mb_s": round(size / 2**20 / seconds, 1),
                "agent_rss_peak_mb": round(peak / 2**20, 1)}
    finally:
        proj.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "output.json"))
    args = parser.parse_args()
    size, big, runs = (32 << 20, 128 << 20, 2) if args.quick else (256 << 20, 1 << 30, 3)
    work = Path(tempfile.mkdtemp(prefix="cb-out-"))
    try:
        result = {"quick": args.quick, "throughput": throughput(work, size, runs),
                  "rss": rss(work, big), "supervisord": through_supervisord(size)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t, r = result["throughput"], result["rss"]
    rows = [("output through CommandRunner into a log", f"{t['runner_mb_s']['median']:.0f} MB/s",
             f"cat > file {t['cat_mb_s']['median']:.0f} MB/s",
             f"{t['runner_mb_s']['median'] / t['cat_mb_s']['median']:.2f}x"),
            ("", "", f"cat | cat > file {t['cat_pipe_mb_s']['median']:.0f} MB/s",
             f"{t['runner_mb_s']['median'] / t['cat_pipe_mb_s']['median']:.2f}x"),
            (f"agent RSS while a task prints {r['bytes'] >> 20} MB", f"{r['rss_peak_mb']:.1f} MB",
             f"before the task {r['rss_before_mb']:.1f} MB", "< 60 MB" if r["rss_peak_mb"] < 60
             else "OVER 60 MB"),
            (f"real agent + supervisord, {size >> 20} MB task output",
             f"{result['supervisord']['mb_s']:.0f} MB/s",
             f"agent RSS peak {result['supervisord']['agent_rss_peak_mb']:.1f} MB", "")]
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"{'what':<{width[0]}}  {'result':>{width[1]}}  {'baseline':<{width[2]}}  ratio")
    for row in rows:
        print(f"{row[0]:<{width[0]}}  {row[1]:>{width[1]}}  {row[2]:<{width[2]}}  {row[3]}")
    print(f"({t['bytes'] >> 20} MB of 100-byte lines, {runs} runs, min/median/max runner "
          f"{t['runner_mb_s']['min']:.0f}/{t['runner_mb_s']['median']:.0f}/"
          f"{t['runner_mb_s']['max']:.0f} MB/s; the log holds "
          f"{t['log_bytes_per_output_byte']}x the output: the '[#42] ' tags)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
