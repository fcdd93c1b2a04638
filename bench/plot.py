"""PNGs from the benchmark results: queue throughput vs consumers, restart delays vs schedule
(lifecycle.png), and throughput vs consumer processes next to the anchors (consumers.png).

    python bench/plot.py [--lifecycle bench/results/lifecycle.json]
                         [--queue bench/results/queue.json] [--out bench/results/lifecycle.png]
                         [--pg bench/results/pg.json] [--consumers-out bench/results/consumers.png]

Needs matplotlib (pip install -e '.[bench]'). Missing inputs leave their panel with a note.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def consumer_series(lifecycle: dict, queue: dict):
    """[(k, min, median, max)] from queue.json's sweep if it has one, else lifecycle's."""
    sweep = (queue.get("consumers") or queue.get("consumer_sweep")
             or queue.get("throughput", {}).get("consumers"))
    source = "queue_bench.py"
    if not isinstance(sweep, dict) or not sweep:
        sweep = lifecycle.get("scenarios", {}).get("consumers", {}).get("tasks_per_second", {})
        source = "lifecycle_bench.py consumers"
    rows = []
    for k, s in sweep.items():
        s = s.get("coffee_team", s) if isinstance(s, dict) else s
        try:
            rows.append((int(k), s["min"], s["median"], s["max"]))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(rows), source


def plot(lifecycle: dict, queue: dict, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows, source = consumer_series(lifecycle, queue)
    if rows:
        ks = [r[0] for r in rows]
        med = [r[2] for r in rows]
        lo = [r[2] - r[1] for r in rows]
        hi = [r[3] - r[2] for r in rows]
        left.errorbar(ks, med, yerr=[lo, hi], marker="o", capsize=4,
                      label="coffee_team claim+complete (median, min-max)")
        two = queue.get("throughput", {}).get("1 producer + 2 consumers", {}).get("coffee_team")
        if two:
            left.errorbar([2], [two["median"]], yerr=[[two["median"] - two["min"]],
                                                       [two["max"] - two["median"]]],
                          marker="s", capsize=4, linestyle="none",
                          label="queue_bench: 1 producer + 2 consumers")
        left.set_xscale("log", base=2)
        left.set_xticks(ks, [str(k) for k in ks])
        left.set_ylim(bottom=0)
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no consumer results", ha="center", transform=left.transAxes)
    cores = lifecycle.get("cores")
    left.set_title(f"Queue throughput vs consumers ({cores} cores)" if cores
                   else "Queue throughput vs consumers")
    left.set_xlabel(f"consumer processes   [{source}]")
    left.set_ylabel("tasks / s")
    left.grid(alpha=0.3)

    restart = lifecycle.get("scenarios", {}).get("restart", {})
    delays = restart.get("delays_vs_schedule", {})
    if delays:
        base = restart.get("restart_backoff", 1.0)
        sched = sorted(float(k) for k in delays)
        top = max(sched) * 1.15 + 1
        right.plot([0, top], [0, top], color="gray", linestyle="--", label="schedule (ideal)")
        right.fill_between([0, top], [0, top], [1, top + 1], color="tab:green", alpha=0.12,
                           label="within the 1 s target")
        series = [(delays, -0.08, "tab:blue", "from the watchdog's crash event")]
        if restart.get("delays_from_exit_vs_schedule"):
            series.append((restart["delays_from_exit_vs_schedule"], 0.08, "tab:red",
                           "from the process exit (supervisord.log)"))
        for data, dx, color, label in series:
            for i, k in enumerate(sched):
                s = data.get(str(int(k))) or data.get(str(k))
                if not s or s.get("median") is None:
                    continue
                ys = s.get("samples", [])
                right.scatter([k + dx] * len(ys), ys, alpha=0.5, s=16, color=color,
                              label=label if i == 0 else None)
                right.errorbar([k + dx], [s["median"]], yerr=[[s["median"] - s["min"]],
                                                              [s["max"] - s["median"]]],
                               marker="_", markersize=14, capsize=4, color="black")
        right.set_xticks(sched, [f"{k / base:g}x\n({k:g} s)" for k in sched])
        right.set_xlim(0, top)
        right.set_ylim(0, top + 1)
        right.legend(fontsize=8, loc="upper left")
    else:
        right.text(0.5, 0.5, "no restart results", ha="center", transform=right.transAxes)
    right.set_title("Crash -> restart delay vs backoff schedule")
    right.set_xlabel("scheduled delay (restart_backoff x 2^n)")
    right.set_ylabel("measured delay, crash -> restarted (s)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_consumers(pg: dict, out: Path) -> Path | None:
    """Throughput vs consumer processes (pg_bench.py's 5 ms-work sweep), absolute and as the
    speed-up over one consumer, every implementation of the same run."""
    sweep = pg.get("results", {}).get("consumers")
    if not sweep:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    ks = []
    for kind, entry in sweep.items():
        by = entry["by_consumers"]
        ks = sorted(int(k) for k in by)
        med = [by[str(k)]["median"] for k in ks]
        err = [[by[str(k)]["median"] - by[str(k)]["min"] for k in ks],
               [by[str(k)]["max"] - by[str(k)]["median"] for k in ks]]
        style = "-" if kind.startswith("coffee-team") else "--"
        label = entry["label"].split(" (")[0]
        left.errorbar(ks, med, yerr=err, marker="o", capsize=3, linestyle=style, label=label)
        right.plot(ks, [m / med[0] for m in med], marker="o", linestyle=style, label=label)
    right.plot(ks, ks, color="gray", linestyle=":", label="ideal (linear)")
    right.axhline(6, color="tab:red", alpha=0.4, linewidth=1, label="goal at 8: 6×")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("consumer processes")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    left.set_ylabel("tasks / s (median, min-max)")
    right.set_ylabel("speed-up over 1 consumer (medians)")
    left.set_title(f"{pg.get('work_ms', 5):g} ms of work per task, {pg.get('n_consumers')} tasks, "
                   f"{pg.get('cpus')} cores", fontsize=10)
    right.set_title(f"PostgreSQL {str(pg.get('server_version', '')).split()[0]}, "
                    f"synchronous_commit={pg.get('synchronous_commit')}; SQLite WAL", fontsize=10)
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycle", default=str(RESULTS / "lifecycle.json"))
    parser.add_argument("--queue", default=str(RESULTS / "queue.json"))
    parser.add_argument("--out", default=str(RESULTS / "lifecycle.png"))
    parser.add_argument("--pg", default=str(RESULTS / "pg.json"))
    parser.add_argument("--consumers-out", default=str(RESULTS / "consumers.png"))
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot.py: matplotlib is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 1
    out = plot(load(Path(args.lifecycle)), load(Path(args.queue)), Path(args.out))
    print(os.path.relpath(out))
    consumers = plot_consumers(load(Path(args.pg)), Path(args.consumers_out))
    if consumers:
        print(os.path.relpath(consumers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
