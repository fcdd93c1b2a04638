"""The idle team: CPU (``idle_cpu``), ``coffee-team status`` wall time (``status``) and
memory per agent (``rss``), each next to a plain baseline."""
from __future__ import annotations

import repo_root  # noqa: F401  (first: the repository root on sys.path for tests.harness)

import contextlib
import statistics
import subprocess
import time

import psutil

from lifecycle_common import (IDLE, PY, agents_of, bench_project, idle_cpu, log, summary,
                              time_commands, wait_running, write_plain_config)
from tests.harness import Project, boot_supervisord, demo_agents

SLEEPERS = {f"sleeper{i}": "sleep infinity" for i in range(6)}


def boot_demo_team(proj: Project) -> None:
    """The six demo agents, idle after their first run, all RUNNING."""
    proj.write_team(demo_agents(check_interval=IDLE))  # defaults: heartbeat, health check 30 s
    boot_supervisord(proj)
    wait_running(proj, proj.team.names)


# --- idle CPU ----------------------------------------------------------------------------------

def bench_idle_cpu(repeat: int, quick: bool, window: float | None = None) -> dict:
    window = window or (15.0 if quick else 60.0)
    settle = 5.0 if quick else 10.0
    team_pct, base_pct, over, roles = [], [], [], []
    for r in range(repeat):
        # side by side, so that whatever else the machine does hits both alike
        with bench_project() as team, bench_project("cbb-") as base:
            team.write_team(demo_agents(check_interval=IDLE))
            write_plain_config(base, SLEEPERS)
            boot_supervisord(team)
            boot_supervisord(base)
            wait_running(team, team.team.names)
            wait_running(base, SLEEPERS)
            time.sleep(settle)
            (d_team, d_base), wall = idle_cpu(window, team, base)
            tp = 100 * sum(d_team.values()) / wall
            bp = 100 * sum(d_base.values()) / wall
            team_pct.append(tp)
            base_pct.append(bp)
            over.append(tp - bp)
            roles.append({k: round(100 * v / wall, 3) for k, v in d_team.items()})
            log(f"idle_cpu run {r + 1}/{repeat}: team {tp:.3f}% baseline {bp:.3f}% "
                f"({roles[-1]})")
    return {"team_percent_of_core": summary(team_pct), "baseline_percent_of_core": summary(base_pct),
            "over_baseline_percent": summary(over), "by_role_percent": roles,
            "window_s": window, "runs": repeat, "target_over_baseline_percent": 1.0}


# --- status wall time ----------------------------------------------------------------------------

def bench_status(repeat: int, quick: bool) -> dict:
    runs = max(10, 5 * repeat) if not quick else 10
    with bench_project() as proj:
        boot_demo_team(proj)
        time.sleep(2)
        ct, sc = time_commands(proj, runs)
    ratio = statistics.median(ct) / statistics.median(sc)
    log(f"status: coffee-team {statistics.median(ct):.3f}s supervisorctl "
        f"{statistics.median(sc):.3f}s ratio {ratio:.2f}")
    return {"coffee_team_status_s": summary(ct), "supervisorctl_status_s": summary(sc),
            "ratio_of_medians": ratio, "runs": runs, "agents": 6, "target_ratio": 1.2}


# --- RSS per idle agent --------------------------------------------------------------------------

def bench_rss(repeat: int, quick: bool) -> dict:
    rss, uss, bare_rss, bare_uss = [], [], [], []
    for r in range(repeat):
        with bench_project() as proj:
            boot_demo_team(proj)
            with bare_pythons(3) as bare:
                time.sleep(3)
                for p in agents_of(proj):
                    with contextlib.suppress(psutil.Error):
                        add_memory(p, rss, uss)
                for b in bare:
                    add_memory(psutil.Process(b.pid), bare_rss, bare_uss)
            log(f"rss run {r + 1}/{repeat}: agents {statistics.median(rss):.1f} MB, bare python "
                f"{statistics.median(bare_rss):.1f} MB")
    return {"agent_rss_mb": summary(rss), "agent_uss_mb": summary(uss),
            "bare_python_rss_mb": summary(bare_rss), "bare_python_uss_mb": summary(bare_uss),
            "ratio_of_medians": statistics.median(rss) / statistics.median(bare_rss),
            "runs": repeat, "target_mb": 20.0}


@contextlib.contextmanager
def bare_pythons(n: int):
    """``n`` bare sleeping pythons: the baseline an idle agent is compared with."""
    procs = [subprocess.Popen([PY, "-c", "import time; time.sleep(1e9)"],
                              stdin=subprocess.DEVNULL) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def add_memory(proc: psutil.Process, rss: list[float], uss: list[float]) -> None:
    m = proc.memory_full_info()
    rss.append(m.rss / 2**20)
    uss.append(m.uss / 2**20)
