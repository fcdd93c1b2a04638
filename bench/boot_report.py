"""The boot group by group (issue 29, item 4), alone or against the code before a change:

    .venv/bin/python bench/boot_report.py --agents 101 --agents 500 --repeat 3 \\
        [--before /tmp/base --kinds team,before,sleepers]

Boots the team (``lifecycle_boot.boot_team``) and its anchors, the kinds interleaved with
their order rotated run by run; ``before`` boots the same team with another checkout's
coffee_team (PYTHONPATH for supervisord and every program it starts). Prints each boot's
group table (``boot_groups.table``) and writes ``results/boot_groups.json`` (every boot's
report, the medians per group, the boot rows as ``lifecycle_boot.bench_boot`` gives them)
and ``results/boot_groups.md`` (the median tables).
"""
from __future__ import annotations

from repo_root import ROOT  # first: the repository root on sys.path for tests.harness

import argparse
import json
import logging
import time
from pathlib import Path

from boot_groups import table
from lifecycle_boot import KINDS, bench_boot
from lifecycle_common import compile_sources, log

RESULTS = ROOT / "bench" / "results"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, action="append", help="team size (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated: team, before, start, before_start, sleepers, "
                             "plain")
    parser.add_argument("--before", help="a checkout of the code before (for kind 'before')")
    parser.add_argument("--json", default=str(RESULTS / "boot_groups.json"))
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if "before" in kinds and not args.before:
        parser.error("kind 'before' needs --before DIR")
    logging.basicConfig(format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    compile_sources()
    if args.before:
        import compileall
        compileall.compile_dir(str(Path(args.before) / "coffee_team"), quiet=1)
    out = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "kinds": kinds,
           "before": args.before, "sizes": {}}
    md = []
    for n in args.agents or [101]:
        out["sizes"][str(n)] = res = bench_boot(args.repeat, False, (n,), kinds,
                                                args.before)[str(n)]
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        for key, title in (("groups", "this checkout"), ("before_groups", "before"),
                           ("start_groups", "`coffee-team start`"),
                           ("before_start_groups", "before, `coffee-team start`")):
            if key in res:
                md.append(table(res[key], f"{n} agents, {title}: median of "
                                          f"{res[key]['runs']} boots (seconds)"))
        md.append(summary_line(n, res))
        log("\n\n".join(md))
    Path(args.json).with_suffix(".md").write_text("\n\n".join(md) + "\n")
    return 0


def summary_line(n: int, res: dict) -> str:
    def med(key):
        return res[key]["median"] if key in res else None
    parts = []
    for key, label in (("boot_s", "RUNNING"), ("boot_ready_s", "ready"),
                       ("before_s", "before RUNNING"), ("before_ready_s", "before ready"),
                       ("start_s", "start: RUNNING"), ("start_returned_s", "start returned"),
                       ("before_start_s", "before start: RUNNING"),
                       ("before_start_returned_s", "before start returned"),
                       ("sleepers_boot_s", "sleepers RUNNING"),
                       ("baseline_boot_s", "plain RUNNING"), ("boot_cpu_s", "CPU"),
                       ("before_cpu_s", "before CPU"), ("start_cpu_s", "start CPU"),
                       ("before_start_cpu_s", "before start CPU"),
                       ("start_cpu_supervisord_s", "start: supervisord CPU"),
                       ("before_start_cpu_supervisord_s", "before start: supervisord CPU"),
                       ("start_cli_cpu_s", "start command CPU"),
                       ("before_start_cli_cpu_s", "before start command CPU"),
                       ("sleepers_cpu_s", "sleepers CPU")):
        if med(key) is not None:
            r = res[key]
            parts.append(f"{label} {r['median']:.2f} s ({r['min']:.2f}–{r['max']:.2f})")
    ratios = ", ".join(f"{k} {v:.2f}×" for k, v in res.items() if k.endswith("_ratio")
                       and k != "target_ratio")
    return f"{n} agents, medians of {res['runs']} runs: " + "; ".join(parts) + f"; {ratios}"


if __name__ == "__main__":
    raise SystemExit(main())
