"""Every benchmark in one command, side by side: bench/results/latest.json + latest.md.

    python bench/run_all.py [--quick] [--skip-queue] [--only queue|pg|SCENARIO ...]

Runs bench/queue_bench.py, bench/statement_profile.py, bench/pg_bench.py,
bench/lifecycle_bench.py, bench/startup_bench.py and bench/imports_bench.py as subprocesses
(each writes its own JSON), draws
bench/results/consumers.png and lifecycle.png with bench/plot.py, then builds one table: what,
result min/median/max, baseline, ratio, target, met? A target is judged on the median of the
runs; min and max are shown next to it. A step that fails is reported in the table and the
exit code is 1; the other steps still run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PY = sys.executable


def run(step: str, cmd: list[str]) -> dict:
    print(f"\n### {step}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.time()
    rc = subprocess.run(cmd, cwd=BENCH.parent, stdin=subprocess.DEVNULL).returncode
    return {"step": step, "returncode": rc, "seconds": round(time.time() - t0, 1)}


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def fmt(s: dict | None, unit: str = "", digits: int = 3, scale: float = 1.0) -> str:
    if not s or s.get("median") is None:
        return "–"
    f = lambda v: f"{v * scale:.{digits}f}"  # noqa: E731
    return f"{f(s['min'])} / **{f(s['median'])}** / {f(s['max'])}{unit}"


def med(s: dict | None):
    return None if not s else s.get("median")


def row(what, result, baseline="–", ratio=None, target="–", met=None, note=""):
    return {"what": what, "result": result, "baseline": baseline,
            "ratio": None if ratio is None else round(ratio, 2), "target": target,
            "met": met, "note": note}


def lifecycle_rows(lc: dict) -> list[dict]:
    sc = lc.get("scenarios", {})
    rows = []
    for name, data in sc.items():
        if "error" in data:
            rows.append(row(f"{name} (lifecycle)", "FAILED", note=data["error"], met=False))
    r = sc.get("restart", {})
    if "lateness_s" in r:
        lat = r["lateness_s"]
        rows.append(row("crash → restart lateness vs due time (backoff 1 s; s)", fmt(lat, " s"),
                        "due time", None, "≤ 1 s", lat["median"] <= 1.0,
                        f"{lat['n']} restarts over {r['runs']} boots; worst {lat['max']:.3f} s"))
        for k, s in r.get("delays_vs_schedule", {}).items():
            e = r.get("delays_from_exit_vs_schedule", {}).get(k)
            rows.append(row(f"crash → restarted delay, schedule {k} s", fmt(s, " s"),
                            f"{k} s", med(s) / float(k), "–", None,
                            f"from the process exit in supervisord.log: {fmt(e, ' s')}"
                            if e else ""))
        if r.get("exit_to_watchdog_s"):
            rows.append(row("process exit (supervisord.log) → watchdog's crash event (s)",
                            fmt(r["exit_to_watchdog_s"], " s")))
    q = sc.get("requeue", {})
    if "pending_again_s" in q:
        s = q["pending_again_s"]
        rows.append(row("kill -9 of a busy agent → task pending again (s)", fmt(s, " s"), "–",
                        None, "≤ 2 s", s["median"] <= 2.0,
                        f"{q['kills']} kills, {q['requeued_by_watchdog']} requeued by the "
                        f"watchdog; worst {s['max']:.3f} s"))
    c = sc.get("idle_cpu", {})
    if "over_baseline_percent" in c:
        over = c["over_baseline_percent"]
        base = c["baseline_percent_of_core"]
        rows.append(row(f"idle CPU, demo team + watchdog ({c['window_s']:g} s; % of a core)",
                        fmt(c["team_percent_of_core"], " %"), fmt(base, " %"),
                        None, "≤ baseline + 1 %", over["median"] <= 1.0,
                        f"above baseline: {fmt(over, ' %')}"))
    rows += boot_rows(sc.get("boot", {}))
    st = sc.get("status", {})
    if "coffee_team_status_s" in st:
        rows.append(row(f"`coffee-team status` wall time, {st['agents']} agents (s)",
                        fmt(st["coffee_team_status_s"], " s"), fmt(st["supervisorctl_status_s"], " s"),
                        st["ratio_of_medians"], "≤ 1.2×", st["ratio_of_medians"] <= 1.2,
                        f"{st['runs']} runs each, interleaved; baseline `supervisorctl status`"))
    for s in (sc.get("scale", {}), sc.get("scale500", {})):
        if "boot_s" in s:
            rows += scale_rows(s)
    m = sc.get("rss", {})
    if "agent_rss_mb" in m:
        rows.append(row("RSS per idle agent (MB)", fmt(m["agent_rss_mb"], " MB", 1),
                        fmt(m["bare_python_rss_mb"], " MB", 1), m["ratio_of_medians"], "≤ 16 MB",
                        m["agent_rss_mb"]["median"] <= 16.0,
                        f"USS {fmt(m['agent_uss_mb'], ' MB', 1)} (bare python "
                        f"{fmt(m['bare_python_uss_mb'], ' MB', 1)})"))
    cons = sc.get("consumers", {})
    for k, s in cons.get("tasks_per_second", {}).items():
        rows.append(row(f"queue drain with {k} consumer process(es) (tasks/s)", fmt(s, "", 0),
                        note=f"{cons['tasks']} tasks, claim(1) + mark_completed"))
    return rows


def watchdog_rows(w: dict) -> list[dict]:
    """bench/watchdog_bench.py: the watchdog's CPU at 100/500 agents vs the previous sampler."""
    rows = []
    for n, by_label in w.get("agents", {}).items():
        ours, base = by_label["watchdog"], by_label["baseline"]
        ratio = med(ours["health_check_cpu_s"]) / med(base["health_check_cpu_s"])
        rows.append(row(f"watchdog CPU per health check at {n} agents (ms)",
                        fmt(ours["health_check_cpu_s"], " ms", 1, 1000),
                        fmt(base["health_check_cpu_s"], " ms", 1, 1000), ratio,
                        note="in-process, real /proc and files; baseline: the previous "
                             "per-agent psutil sampler"))
        target = 0.5 if int(n) <= 100 else 2.0
        rows.append(row(f"watchdog idle CPU at {n} agents, in-process (% of a core)",
                        fmt(ours["idle_percent_of_core"], " %", 2),
                        fmt(base["idle_percent_of_core"], " %", 2), None, f"≤ {target:g} %",
                        med(ours["idle_percent_of_core"]) <= target,
                        "one loop pass a second + one health check per 30 s"))
    return rows


def imports_rows(im: dict) -> list[dict]:
    if "agent_rss_mb" not in im:
        return []
    top = ", ".join(f"{r['module']} {r['cumulative_us'] / 1000:.0f} ms"
                    for r in im["table"] if r["imported"] and r["module"] != "coffee_team.agent.runtime"
                    and r["module"].count(".") == 0)[:200]
    return [row("idle agent after its imports, no supervisord (RSS, MB)",
                fmt(im["agent_rss_mb"], " MB", 1), fmt(im["bare_python_rss_mb"], " MB", 1),
                im["ratio_of_medians"], "≤ 16 MB", med(im["agent_rss_mb"]) <= 16.0,
                f"{im['modules_imported']} modules, {im['import_self_us_total'] / 1000:.0f} ms "
                f"of imports (imports_bench.py); slowest packages: {top}")]


def queue_rows(q: dict) -> list[dict]:
    rows = []
    for what, impls in q.get("throughput", {}).items():
        ours = impls.get("coffee_team")
        base = impls.get("sqlite3")
        if not ours:
            continue
        ratio = med(ours) / med(base) if base and med(base) else None
        extra = f"huey {fmt(impls['huey'], '', 0)}" if impls.get("huey") else ""
        rows.append(row(f"queue {what} (tasks/s)", fmt(ours, "", 0), fmt(base, "", 0), ratio,
                        note=("baseline plain sqlite3; " + extra).strip("; ")))
    lat = q.get("latency", {})
    ours, base = lat.get("coffee_team"), lat.get("sqlite3")
    if isinstance(ours, dict) and "p50_ms" in ours:
        show = lambda d: (f"p50 **{d['p50_ms']:.3f}** / p99 {d['p99_ms']:.3f} / "  # noqa: E731
                          f"max {d['max_ms']:.3f} ms")
        rows.append(row("queue send → claim latency across processes (ms)", show(ours),
                        show(base) if isinstance(base, dict) and "p50_ms" in base else "–",
                        ours["p50_ms"] / base["p50_ms"] if isinstance(base, dict)
                        and base.get("p50_ms") else None,
                        note="percentiles of one message every 10 ms (queue_bench.py)"))
    return rows


def goal(what, ours, base, target_ratio, note="", base_name=""):
    """A row judged on median(ours) / median(base) >= target_ratio."""
    ratio = med(ours) / med(base) if med(ours) and med(base) else None
    return row(what, fmt(ours, "", 0), f"{base_name} {fmt(base, '', 0)}".strip(), ratio,
               f"≥ {target_ratio:g}×", None if ratio is None else ratio >= target_ratio, note)


def sqlite_goal_rows(q: dict) -> list[dict]:
    """Issue #29's SQLite goals, each against its anchor from the same run: the agent cycle
    (send + complete_and_claim) vs huey's cycle with its result put, and the separate calls
    (send, claim, mark_completed) vs plain sqlite3; the other anchor of each in its note."""
    cycle = q.get("throughput", {}).get("full cycle", {})
    if "coffee_team" not in cycle:
        return []
    huey_kind = "huey+result" if cycle.get("huey+result") else "huey"
    huey = cycle.get(huey_kind)
    huey_note = ("huey: enqueue + dequeue + put_data of the result (its cycle for a task that "
                 f"returns a value); without the result put {fmt(cycle.get('huey'), '', 0)}")
    cpu = q.get("cpu_throughput", {}).get("full cycle", {})

    def per_cpu(kind: str, base: str) -> str:
        """The same ratio in tasks per CPU second of the benchmark process (SQLite runs in
        it): what a busy machine's waits do not blur."""
        if not (med(cpu.get(kind)) and med(cpu.get(base))):
            return ""
        return (f"; per CPU second {med(cpu[kind]):,.0f} vs {med(cpu[base]):,.0f}: "
                f"{med(cpu[kind]) / med(cpu[base]):.2f}×")
    rows = []
    ours = cycle.get("coffee_team cycle")
    if ours:
        rows.append(goal("SQLite agent cycle, send + complete_and_claim, vs huey (tasks/s)",
                         ours, huey, 1.0, f"{huey_note}; agent cycle: "
                         f"{q.get('agent_cycle', '?')}; plain sqlite3 "
                         f"{fmt(cycle.get('sqlite3'), '', 0)}"
                         + per_cpu("coffee_team cycle", huey_kind), "huey"))
    rows.append(goal("SQLite separate calls, send + claim + mark_completed, vs plain sqlite3 "
                     "(tasks/s)", cycle["coffee_team"], cycle.get("sqlite3"), 0.5,
                     "plain sqlite3: INSERT, BEGIN IMMEDIATE + UPDATE … RETURNING claim, UPDATE "
                     f"completion; {q.get('durability', '')}; huey {fmt(huey, '', 0)}"
                     + per_cpu("coffee_team", "sqlite3"), "sqlite3"))
    return rows


def statement_rows(st: dict) -> list[dict]:
    """bench/statement_profile.py: each SQLite cycle's statements, coffee-team's next to the
    anchor its goal row names (same run, interleaved)."""
    impls = st.get("impls", {})
    rows = []
    for kind, base in (("coffee_team cycle", "huey+result"), ("coffee_team", "sqlite3")):
        ours, anchor = impls.get(kind), impls.get(base)
        if not ours or not anchor:
            continue

        def shown(data: dict) -> str:
            return ", ".join(f"{name.split(' (')[0][:40]} ×{s['per_cycle']:.2g} {s['us']:.1f} µs"
                             for name, s in list(data["statements"].items())[:6])
        rows.append(row(f"SQLite {kind}: CPU per cycle, statement by statement (µs)",
                        f"{ours['cpu_us']:.0f} µs, {ours['in_statements_us']:.0f} in statements",
                        f"{base} {anchor['cpu_us']:.0f} µs, {anchor['in_statements_us']:.0f} "
                        "in statements", anchor["cpu_us"] / ours["cpu_us"],
                        note=f"statement_profile.py, CPU µs per cycle; {kind}: {shown(ours)}; "
                             f"{base}: {shown(anchor)}"))
    return rows


def pg_rows(pg: dict) -> list[dict]:
    """Issue #17's and #29's PostgreSQL goals from bench/pg_bench.py (pg.json)."""
    res, rows = pg.get("results", {}), []
    cycle_how = f"agent cycle: {pg.get('agent_cycle', '?')}"
    full = res.get("full-cycle", {})
    for kind, name in (("coffee-team", "separate calls, send + claim + mark_completed"),
                       ("coffee-team cycle", "agent cycle, send + complete_and_claim")):
        if kind in full:
            cpu, raw_cpu = (full[kind].get("cpu_us_per_task"),
                            full.get("psycopg2", {}).get("cpu_us_per_task"))
            on_cpu = (f"; CPU per task, client + its server process: {fmt(cpu, ' µs', 0)} vs "
                      f"raw {fmt(raw_cpu, ' µs', 0)}: {med(raw_cpu) / med(cpu):.2f}×"
                      if med(cpu) and med(raw_cpu) else "")
            rows.append(goal(f"PostgreSQL {name}, one process (tasks/s)", full[kind],
                             full.get("psycopg2"), 0.8,
                             "raw psycopg2: INSERT, UPDATE … FOR UPDATE SKIP LOCKED claim, UPDATE "
                             "completion, autocommit" + ("; " + cycle_how if "cycle" in kind
                                                         else "") + on_cpu, "psycopg2"))
    drain = res.get("drain", {})
    ours = drain.get("coffee-team cycle")
    if ours:
        note = (f"{cycle_how}; claim + mark_completed {fmt(drain.get('coffee-team'), '', 0)}; "
                f"raw psycopg2 {fmt(drain.get('psycopg2'), '', 0)}")
        rows.append(goal("PostgreSQL drain, 1 consumer, vs pgqueuer batch_size=1 (tasks/s)", ours,
                         drain.get("pgqueuer 1"), 1.0, note + "; pgqueuer buffers completions "
                         "in memory (≤ batch_size or ~0.1 s)", "pgqueuer"))
        best = max((drain.get(k) for k in ("procrastinate", "procrastinate sync")
                    if drain.get(k)), key=med, default=None)
        rows.append(goal("PostgreSQL drain, 1 consumer, vs procrastinate's worker (tasks/s)", ours,
                         best, 1.0, note + f"; procrastinate async task "
                         f"{fmt(drain.get('procrastinate'), '', 0)}, sync task "
                         f"{fmt(drain.get('procrastinate sync'), '', 0)}", "procrastinate"))
    if drain.get("coffee-team batch"):
        ratio = (med(drain["coffee-team batch"]) / med(drain["pgqueuer"])
                 if med(drain.get("pgqueuer")) else None)
        rows.append(row("PostgreSQL drain, batches of 10: claim(limit=10) vs pgqueuer's default "
                        "batch (tasks/s)", fmt(drain["coffee-team batch"], "", 0),
                        f"pgqueuer {fmt(drain.get('pgqueuer'), '', 0)}", ratio,
                        note="coffee-team commits each completion; pgqueuer holds them in "
                             "memory for up to 10 jobs or ~0.1 s"))
    sweep = res.get("consumers", {})
    for kind, entry in sweep.items():
        by = entry.get("by_consumers", {})
        scale = entry.get("scaling_1_to_8")
        if scale is None:
            continue
        ours = kind.startswith("coffee-team")
        raw = sweep.get("psycopg2", {}).get("scaling_1_to_8")
        rows.append(row(f"1 → 8 consumer processes, 5 ms work: {entry['label']} (scaling)",
                        f"**{scale:.2f}×** (1: {med(by.get('1')):,.0f}/s, 8: "
                        f"{med(by.get('8')):,.0f}/s)",
                        f"raw psycopg2 {raw:.2f}×" if ours and raw else "–", None,
                        "≥ 6×" if ours else "–", scale >= 6.0 if ours else None,
                        "8 consumers: " + fmt(by.get("8"), "/s", 0)))
    return rows


def markdown(doc: dict) -> str:
    out = [f"# Benchmarks ({doc['generated_at']}{', --quick' if doc['quick'] else ''})", "",
           f"{doc['machine']['cores']} cores, Python {doc['machine']['python']}, SQLite "
           f"{doc['machine']['sqlite']}. Results are min / **median** / max over the runs; "
           f"targets are judged on the median.", "",
           "| what | result (min / median / max) | baseline | ratio | target | met? |",
           "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        met = {True: "yes", False: "**NO**", None: "–"}[r["met"]]
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:g}×"
        what = r["what"] + (f"<br><sub>{r['note']}</sub>" if r["note"] else "")
        out.append(f"| {what} | {r['result']} | {r['baseline']} | {ratio} | {r['target']} | {met} |")
    findings = doc.get("findings") or []
    if findings:
        out += ["", "## Scaling findings (logs at the largest team)", ""]
        out += [f"- {f}" for f in findings]
    failed = [s for s in doc["steps"] if s["returncode"] != 0]
    if failed:
        out += ["", "## Failed steps", ""] + [f"- {s['step']}: exit {s['returncode']}" for s in failed]
    out += ["", "Raw samples: `latest.json`; plots: `consumers.png`, `lifecycle.png` "
                "(`python bench/plot.py`).", ""]
    return "\n".join(out)


def scale_rows(s: dict) -> list:
    """The rows of one ``scale`` result (100 or 500 agents)."""
    rows = []
    n = s["agents"]
    target = s.get("target_boot_s") or 15.0
    rows.append(row(f"boot {n} agents to RUNNING, 10 priority groups, staggered (s)",
                    fmt(s["boot_s"], " s", 2), fmt(s["baseline_boot_s"], " s", 2),
                    s["boot_ratio"], f"≤ {target:g} s", med(s["boot_s"]) <= target,
                    "baseline: plain supervisord, same commands, autostart=true, unstaggered"
                    + (f"; all ready {fmt(s['boot_ready_s'], ' s', 2)} (baseline "
                       f"{fmt(s['baseline_ready_s'], ' s', 2)})" if "boot_ready_s" in s
                       else "")))
    rows.append(row(f"`coffee-team status` at {n} agents (s)", fmt(s["status_s"], " s"),
                    fmt(s["supervisorctl_s"], " s"), s["status_ratio"], "≤ 1.2×, ≤ 0.5 s",
                    s["status_ratio"] <= 1.2 and med(s["status_s"]) <= 0.5,
                    "baseline `supervisorctl status`, same run, interleaved"))
    rows.append(row(f"XML-RPC coffee.getTeamStatus at {n} agents (s)",
                    fmt(s.get("rpc_getTeamStatus_s"), " s", 4),
                    fmt(s["rpc_getAllProcessInfo_s"], " s", 4),
                    med(s.get("rpc_getTeamStatus_s")) / med(s["rpc_getAllProcessInfo_s"])
                    if med(s.get("rpc_getTeamStatus_s")) else None,
                    note="baseline supervisor.getAllProcessInfo; both block supervisord's loop"))
    broadcast_target = 3.0 if n >= 500 else None
    rows.append(row(f"broadcast (send_all) drained by all {n} agents (s)",
                    fmt(s["broadcast_drain_s"], " s"), "–", None,
                    f"≤ {broadcast_target:g} s" if broadcast_target else "–",
                    med(s["broadcast_drain_s"]) <= broadcast_target if broadcast_target else None,
                    "from send_all until every copy is completed"))
    k = s.get("crash_victims", 10)
    rows.append(row(f"{k} of {n} agents, each holding a task, kill -9'd at once: restarted",
                    fmt(s["crash_restarted"], f"/{k}", 0), str(k), None, f"{k}/{k}",
                    (s["crash_restarted"]["min"] or 0) >= k,
                    f"all RUNNING again after {fmt(s['crash_all_running_s'], ' s', 2)} "
                    f"(restart_backoff 1 s); lateness {fmt(s['crash_lateness_s'], ' s')}"))
    rows.append(row("… their held tasks requeued (agents) and done again",
                    fmt(s["crash_tasks_requeued"], f"/{k}", 0), str(k), None, f"{k}/{k}",
                    (s["crash_tasks_requeued"]["min"] or 0) >= k,
                    f"every held task completed by the new instances "
                    f"{fmt(s['crash_tasks_done_s'], ' s', 2)} after the kill"))
    watchdog_target = 0.5 if n <= 100 else 2.0
    rows.append(row(f"watchdog idle CPU at {n} agents (% of a core)",
                    fmt(s["idle_cpu_watchdog_percent"], " %", 2), "–", None,
                    f"≤ {watchdog_target:g} %",
                    med(s["idle_cpu_watchdog_percent"]) <= watchdog_target,
                    "over a window spanning the 30 s health check"))
    rows.append(row(f"idle CPU at {n} agents (% of a core)", fmt(s["idle_cpu_percent"], " %", 2),
                    note=f"watchdog {fmt(s['idle_cpu_watchdog_percent'], ' %', 2)}, "
                         f"supervisord {fmt(s['idle_cpu_supervisord_percent'], ' %', 2)}, "
                         f"agents {fmt(s['idle_cpu_agents_percent'], ' %', 2)}"))
    rows.append(row(f"supervisord open fds at {n} agents", fmt(s["supervisord_fds"], "", 0),
                    note="minfds sized by gen-config (confgen.min_fds)"))
    rows.append(row(f"graceful shutdown rate at {n} agents (agents/s)",
                    fmt(s["shutdown_agents_per_s"], "", 2),
                    fmt(s["baseline_shutdown_agents_per_s"], "", 2),
                    med(s["shutdown_agents_per_s"]) / med(s["baseline_shutdown_agents_per_s"])
                    if med(s["baseline_shutdown_agents_per_s"]) else None,
                    note=f"first 10 s of supervisor.shutdown(); groups stop one after "
                         f"another, each reaped on a ≤ 1 s loop pass: ≈ "
                         f"{n / med(s['shutdown_agents_per_s']):.0f} s for {n} agents"
                    if med(s["shutdown_agents_per_s"]) else ""))
    return rows


def boot_rows(boot: dict) -> list:
    """The ``boot`` scenario (lifecycle_boot.py): one size after the other (101 and 500)."""
    rows = []
    for size in sorted((k for k in boot if k.isdigit()), key=int):
        b, n = boot[size], int(size)
        if "sleepers_boot_s" not in b:
            continue  # a result of the previous boot scenario: run it again
        target = b.get("target_ratio", 1.5)
        report = b.get("groups") if isinstance(b.get("groups"), dict) else {}
        groups, t = report.get("groups", []), report.get("totals", {})
        waits = ", ".join(f"{g['seen_s'] - g['asked_s']:.2f}" for g in groups
                          if g.get("seen_s") is not None and g.get("asked_s") is not None)
        cpu = (f"CPU {fmt(b['boot_cpu_s'], ' s', 2)} against the sleepers' "
               f"{fmt(b['sleepers_cpu_s'], ' s', 2)} ({b['cpu_sleepers_ratio']:.2f}×); "
               if "cpu_sleepers_ratio" in b else "")
        split = (f"summed over the groups, medians: supervisord forking {t['spread_s']:.2f} s, "
                 f"agents' start-up {t['startup_s']:.2f} s, watchdog asking and reacting "
                 f"{t['rpc_s'] + t['react_s'] + t['handover_s']:.2f} s; "
                 if all(t.get(k) is not None for k in ("spread_s", "startup_s", "rpc_s",
                                                       "react_s", "handover_s")) else "")
        rows.append(row(f"boot {n} agents, 10 priority groups, each once the previous one is "
                        "ready: all RUNNING (s)", fmt(b["boot_s"], " s", 2),
                        f"supervisord spawning {n} bare python sleepers at one priority: "
                        f"{fmt(b['sleepers_boot_s'], ' s', 2)}", b["sleepers_ratio"],
                        f"≤ {target:g}×, order kept", b["sleepers_ratio"] <= target,
                        f"{cpu}{split}watchdog process started "
                        f"{fmt(b.get('watchdog_started_s'), ' s', 2)} and first group spawned "
                        f"{fmt(b['first_spawn_s'], ' s', 2)} after supervisord was started; "
                        f"each group asked → seen ready, medians: {waits} s; the last group "
                        f"is RUNNING startsecs (1 s) after its spawn; plain supervisord "
                        f"with the same commands unstaggered "
                        f"{fmt(b.get('baseline_boot_s'), ' s', 2)}"
                        + (f" ({b['boot_ratio']:.2f}×)" if "boot_ratio" in b else "")))
        rows.append(row(f"boot {n} agents: all ready (first heartbeat of every agent) (s)",
                        fmt(b["boot_ready_s"], " s", 2), fmt(b.get("baseline_ready_s"), " s", 2),
                        b.get("ready_ratio"),
                        note=f"baseline: plain supervisord, same commands, unstaggered; groups "
                             f"whose wait timed out: {fmt(b['groups_not_ready'], '', 0)}"))
        rows.append(row(f"supervisord open fds after booting {n} agents",
                        fmt(b["supervisord_fds"], "", 0),
                        note=f"minfds={b['minfds']} in the generated config"))
        if med(b.get("agent_rss_mb")) and n < 500:
            rows.append(row(f"RSS per idle agent, median of the {n} agents after the boot (MB)",
                            fmt(b["agent_rss_mb"], " MB", 1), "–", None, "≤ 16 MB",
                            med(b["agent_rss_mb"]) <= 16.0,
                            "demo handler, 3 s after all ready; a bare sleeping python: the "
                            "`rss` row"))
    return rows


def startup_rows(st: dict) -> list:
    """bench/startup_bench.py: one agent's exec → first heartbeat vs a bare python."""
    if "agent_s" not in st:
        return []
    phases = ", ".join(f"{k} {v['median'] * 1000:.1f}" for k, v in st["phases"].items()
                       if k != "total")
    return [row("one agent's start-up: exec → first heartbeat file, a `command:` agent (ms)",
                fmt(st["agent_s"], " ms", 1, 1000),
                f"bare python writing a file the same way: {fmt(st['bare_python_s'], ' ms', 1, 1000)}",
                st["ratio_of_medians"], f"≤ {st['target_ratio']:g}×",
                st["ratio_of_medians"] <= st["target_ratio"],
                f"{st.get('install', 'editable')}, {st['runs']} runs each, interleaved; CPU to "
                f"the first heartbeat {fmt(st.get('agent_cpu_s'), ' ms', 1, 1000)} vs bare "
                f"python {fmt(st.get('bare_python_cpu_s'), ' ms', 1, 1000)}"
                + (f"; the floor (a python importing {', '.join(st['floor_imports'])}): "
                   f"{fmt(st['floor_python_s'], ' ms', 1, 1000)}, CPU "
                   f"{fmt(st['floor_python_cpu_s'], ' ms', 1, 1000)}, agent "
                   f"{st['ratio_to_floor']:.2f}× (CPU {st['cpu_ratio_to_floor']:.2f}×)"
                   if "floor_python_s" in st else "") + "; phases (ms, medians): "
                f"{phases}; "
                f"{st['imports']['modules']} modules imported")]


def scale_findings(lc: dict) -> list[str]:
    s = lc.get("scenarios", {}).get("scale", {})
    out = []
    n = s.get("agents")
    if n and med(s.get("supervisord_fds")):
        per = med(s["supervisord_fds"]) / n
        out.append(f"fds: supervisord holds {med(s['supervisord_fds']):.0f} fds at {n} agents "
                   f"(≈ {per:.1f} per agent); gen-config sizes minfds for the team "
                   f"(confgen.min_fds: 3 per program, 4 per listener, 64, ×1.25)")
    if n and med(s.get("shutdown_agents_per_s")):
        out.append(f"shutdown: {med(s['shutdown_agents_per_s']):.2f} agents/s ⇒ ≈ "
                   f"{n / med(s['shutdown_agents_per_s']):.0f} s to stop {n} agents; "
                   f"`coffee-team stop` waits stop_wait_seconds + 15 s and then reports failure")
    if n and med(s.get("rpc_getTeamStatus_s")):
        out.append(f"status: coffee.getTeamStatus takes {1000 * med(s['rpc_getTeamStatus_s']):.0f} ms "
                   f"at {n} agents (≈ {1000 * med(s['rpc_getTeamStatus_s']) / n:.2f} ms per agent), "
                   f"all of it inside supervisord's single-threaded loop")
    if n and med(s.get("idle_cpu_watchdog_percent")):
        out.append(f"idle CPU: the watchdog uses {med(s['idle_cpu_watchdog_percent']):.1f} % of a "
                   f"core at {n} agents, the agents "
                   f"{med(s['idle_cpu_agents_percent']):.1f} % together")
    for f in s.get("findings", []):
        if isinstance(f, str):
            out.append(f)
            continue
        bad = {k: v for k, v in f.items() if k != "run" and v}
        out.append(f"run {f.get('run')}: " + (", ".join(f"{k} = {v}" for k, v in bad.items())
                                              if bad else "no buffer overflow, no 'database is "
                                              "locked', no watchdog errors, no fd errors"))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    parser.add_argument("--skip-queue", action="store_true", help="keep the last queue.json")
    parser.add_argument("--only", action="append", default=[],
                        help="what to rerun, the rest keeping its last results: 'queue' "
                             "(queue_bench.py), 'pg' (pg_bench.py), 'startup' "
                             "(startup_bench.py, imports_bench.py) or a lifecycle scenario")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild latest.json/latest.md (and the plot) from "
                             "the results already in bench/results/")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    steps = []
    if args.report_only:
        steps.append(run("plot", [PY, str(BENCH / "plot.py")]))
        return report(steps, load(RESULTS / "lifecycle.json").get("scenarios", {})
                      .get("restart", {}).get("quick", False))
    lifecycle_only = [name for name in args.only if name not in ("queue", "pg", "startup")]
    if (not args.skip_queue and not args.only) or "queue" in args.only:
        n = "1000" if args.quick else "5000"
        steps.append(run("queue", [PY, str(BENCH / "queue_bench.py"), "--n", n, "--repeat",
                                   "3", "--json", str(RESULTS / "queue.json")]))
    if (not args.skip_queue and not args.only) or "queue" in args.only:
        steps.append(run("statements", [PY, str(BENCH / "statement_profile.py"), "--n",
                                        "1000" if args.quick else "2000", "--repeat", "5",
                                        "--json", str(RESULTS / "statements.json")]))
    if not args.only or "pg" in args.only:
        steps.append(run("pg", [PY, str(BENCH / "pg_bench.py"), "--json", str(RESULTS / "pg.json")]
                         + (["--quick"] if args.quick else [])))
    if not args.only or lifecycle_only:
        cmd = [PY, str(BENCH / "lifecycle_bench.py"), "--json", str(RESULTS / "lifecycle.json")]
        cmd += ["--quick"] if args.quick else []
        for name in lifecycle_only:
            cmd += ["--only", name]
        steps.append(run("lifecycle", cmd))
    if not args.only:
        steps.append(run("watchdog", [PY, str(BENCH / "watchdog_bench.py"), "--json",
                                      str(RESULTS / "watchdog.json")]
                         + (["--quick"] if args.quick else [])))
    if not args.only or "startup" in args.only:
        steps.append(run("startup", [PY, str(BENCH / "startup_bench.py"), "--repeat",
                                     "8" if args.quick else "15",
                                     "--json", str(RESULTS / "startup.json")]))
        steps.append(run("imports", [PY, str(BENCH / "imports_bench.py"), "--repeat",
                                     "2" if args.quick else "3",
                                     "--json", str(RESULTS / "imports.json")]))
    steps.append(run("plot", [PY, str(BENCH / "plot.py")]))
    return report(steps, args.quick)


def report(steps: list[dict], quick: bool) -> int:
    queue, lc, pg = (load(RESULTS / name) for name in ("queue.json", "lifecycle.json", "pg.json"))
    imports = load(RESULTS / "imports.json")
    doc = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": quick,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform()},
        "steps": steps,
        "rows": sqlite_goal_rows(queue) + statement_rows(load(RESULTS / "statements.json"))
                + pg_rows(pg) + startup_rows(load(RESULTS / "startup.json")) + lifecycle_rows(lc)
                + imports_rows(imports)
                + watchdog_rows(load(RESULTS / "watchdog.json"))
                + queue_rows(queue),
        "findings": scale_findings(lc),
        "queue": queue,
        "pg": pg,
        "lifecycle": lc,
        "imports": imports,
    }
    (RESULTS / "latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    (RESULTS / "latest.md").write_text(markdown(doc))
    print((RESULTS / "latest.md").read_text())
    return 0 if all(s["returncode"] == 0 for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
