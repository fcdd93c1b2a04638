"""A boot taken apart group by group (issue 29, item 4): where the time of a ready-gated boot goes.

For each priority group, on one clock (epoch seconds, shown from supervisord's start):

- ``asked``: the watchdog asked supervisord to start the group (its ``group_ready`` event's
  ``asked_at``; for a journal from before that field: the event's time minus ``waited``);
- ``spawned``: supervisord forked each process (its log's ``spawned:`` lines, ms);
- ``ready``: each agent's first heartbeat file (inotify on the status directory, this process:
  no polling);
- ``seen``: the watchdog found the group ready (``group_ready``'s ``seen_at``);
- ``RUNNING``: supervisord's ``success: … entered RUNNING state`` (``startsecs`` after the
  spawn);
- the machine's CPU use from /proc/stat between ``asked`` and the group's last ready (both
  cores busy = contention, whoever uses them).

The durations that add up to the boot: before the first group (supervisord's start, the
watchdog's own start, its first ``asked``), then per group ``rpc`` (asked → first spawn),
``spread`` (first → last spawn: supervisord's fork loop), ``start-up`` (last spawn → last
ready: the agents' own start-up sharing the cores), ``react`` (last ready → seen),
``handover`` (seen → the next group's asked), and after the last group the tail to all
RUNNING (``startsecs`` after the last spawn, unless the last ready comes later).
"""
from __future__ import annotations

import ctypes
import os
import re
import select
import statistics
import struct
import threading
import time
from pathlib import Path

from coffee_team.heartbeat import read_heartbeat
from coffee_team.watchdog.policy import started_since

IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
_libc = ctypes.CDLL(None, use_errno=True)
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ "
                      r"(?:spawned: '([^']+)' with pid|success: (\S+) entered RUNNING state)")
STATUS_FILE = re.compile(r"^(.+)_status\.json$")


class FirstWrites:
    """Epoch time each agent's first ready heartbeat appeared in the status directory (its
    ``<agent>_status.json`` renamed in or written, with a ``started_at``: not the "starting"
    beat of an agent that waits for the database), on a thread reading inotify."""

    def __init__(self, directory: Path):
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.directory = Path(directory)
        self.cpu: dict[str, float | None] = {}  # CPU seconds of the agent when it got ready
        self.first: dict[str, float] = {}
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or _libc.inotify_add_watch(self.fd, os.fsencode(str(directory)),
                                                  IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            readable = select.select([self.fd, self._stop_r], [], [])[0]
            seen = time.time()
            if self.fd in readable:
                self._read(seen)
            if self._stop_r in readable:
                return

    def _read(self, seen: float) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        i = 0
        while i < len(data):
            _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, i)
            m = STATUS_FILE.match(data[i + 16:i + 16 + size].rstrip(b"\0").decode())
            i += 16 + size
            if not m or m[1] in self.first:
                continue
            beat = read_heartbeat(self.directory, m[1])
            if started_since(beat, 0):
                self.first[m[1]] = seen
                self.cpu[m[1]] = process_cpu(beat.get("pid"))

    def close(self) -> dict[str, float]:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)
        return dict(self.first)


def process_cpu(pid) -> float | None:
    """User + system CPU seconds of a live process (None if gone or no pid)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """The machine's busy fraction over time (/proc/stat every ``every`` s, on a thread)."""

    def __init__(self, every: float = 0.05):
        self.samples: list[tuple[float, int, int]] = []  # (epoch, busy jiffies, all jiffies)
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            idle = fields[3] + fields[4]  # idle + iowait
            self.samples.append((time.time(), sum(fields) - idle, sum(fields)))
            self._stop.wait(self._every)

    def close(self) -> list[tuple[float, int, int]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    @staticmethod
    def busy(samples, start: float, end: float) -> float | None:
        """Busy fraction of all cores between two epoch times (None if too short to tell)."""
        inside = [s for s in samples if start <= s[0] <= end]
        if len(inside) < 2 or inside[-1][2] == inside[0][2]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2])


class SupervisordLog:
    """supervisord's log read as it grows: the epoch time each program was first spawned
    and first RUNNING (its ``spawned:`` and ``success: … entered RUNNING state`` lines, ms;
    the RUNNING line is written the moment the state changes, ``startsecs`` after the spawn).
    Reading the file takes nothing from supervisord's one thread, as polling its states
    over XML-RPC would (at 500 programs a getAllProcessInfo every 0.2 s is a share of it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.spawned: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self._offset = 0
        self._partial = ""

    def poll(self) -> None:
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self._offset)
                text = f.read()
                self._offset = f.tell()
        except OSError:
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            m = LOG_LINE.match(line)
            if not m:
                continue
            at = time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
            if m[3]:
                self.spawned.setdefault(m[3], at)
            else:
                self.running.setdefault(m[4], at)


def supervisord_times(log_path: Path) -> tuple[dict[str, float], dict[str, float]]:
    """(spawned, RUNNING) epoch times by program name from supervisord's log (the first of
    each: a boot's)."""
    log = SupervisordLog(log_path)
    log.poll()
    return log.spawned, log.running


def group_report(priorities: dict[str, int], journal: list[dict], spawned: dict[str, float],
                 running: dict[str, float], ready: dict[str, float], cpu, wall0: float,
                 watchdog_started: float | None = None,
                 ready_cpu: dict[str, float | None] | None = None) -> dict:
    """The boot group by group (seconds since ``wall0``, supervisord's start) and the total
    taken apart; ``journal``: the boot's events (dicts with kind, ts, detail)."""
    by_priority: dict[int, list[str]] = {}
    for name, p in priorities.items():
        by_priority.setdefault(p, []).append(name)
    waits = {}
    for e in journal:
        if e["kind"] in ("group_ready", "group_not_ready"):
            d = e.get("detail") or {}
            asked = d.get("asked_at", e["ts"] - (d.get("waited") or 0))
            waits[d.get("priority")] = {"asked": asked, "seen": d.get("seen_at", e["ts"]),
                                        "timed_out": e["kind"] == "group_not_ready"}

    def rel(t):
        return None if t is None else round(t - wall0, 3)

    def span(values, how):
        values = [v for v in values if v is not None]
        return how(values) if values else None

    groups = []
    for p in sorted(by_priority):
        names = by_priority[p]
        w = waits.get(p, {})
        sp = [spawned.get(n) for n in names]
        rd = [ready.get(n) for n in names]
        rn = [running.get(n) for n in names]
        per_agent = [r - s for s, r in zip(sp, rd) if s is not None and r is not None]
        own_cpu = [c for c in ((ready_cpu or {}).get(n) for n in names) if c is not None]
        last_ready = span(rd, max)
        groups.append({
            "priority": p, "agents": len(names), "asked_s": rel(w.get("asked")),
            "first_spawn_s": rel(span(sp, min)), "last_spawn_s": rel(span(sp, max)),
            "first_ready_s": rel(span(rd, min)), "last_ready_s": rel(last_ready),
            "seen_s": rel(w.get("seen")), "first_running_s": rel(span(rn, min)),
            "last_running_s": rel(span(rn, max)), "timed_out": w.get("timed_out"),
            "agent_startup_median_s": round(statistics.median(per_agent), 3)
            if per_agent else None,
            "agent_startup_max_s": round(max(per_agent), 3) if per_agent else None,
            "agent_cpu_median_s": round(statistics.median(own_cpu), 3) if own_cpu else None,
            "agents_cpu_s": round(sum(own_cpu), 2) if own_cpu else None,
            "cpu_busy": None if w.get("asked") is None or last_ready is None
            else _round(CpuSampler.busy(cpu, w["asked"], last_ready), 2)})
    for g, nxt in zip(groups, groups[1:] + [None]):
        g["rpc_s"] = _diff(g["first_spawn_s"], g["asked_s"])
        g["spread_s"] = _diff(g["last_spawn_s"], g["first_spawn_s"])
        g["startup_s"] = _diff(g["last_ready_s"], g["last_spawn_s"])
        g["react_s"] = _diff(g["seen_s"], g["last_ready_s"])
        g["handover_s"] = _diff(nxt["asked_s"], g["seen_s"]) if nxt else None
        g["startsecs_s"] = _diff(g["last_running_s"], g["last_spawn_s"])
    return {"groups": groups, "totals": totals(groups, rel(watchdog_started))}


def totals(groups: list[dict], watchdog_started_s: float | None) -> dict:
    """The boot's wall time split into its parts (each summed over the groups)."""
    if not groups:
        return {}
    last = groups[-1]
    all_running = max((g["last_running_s"] for g in groups if g["last_running_s"] is not None),
                      default=None)
    all_ready = max((g["last_ready_s"] for g in groups if g["last_ready_s"] is not None),
                    default=None)
    out = {"watchdog_started_s": watchdog_started_s, "first_asked_s": groups[0]["asked_s"],
           "all_ready_s": all_ready, "all_running_s": all_running}
    for key in ("rpc_s", "spread_s", "startup_s", "react_s", "handover_s", "agents_cpu_s"):
        out[key] = round(sum(g[key] for g in groups if g[key] is not None), 3)
    out["tail_s"] = _diff(all_running, max(x for x in (last["seen_s"], all_ready)
                                           if x is not None)) if all_running else None
    return out


def _diff(a, b):
    return None if a is None or b is None else round(a - b, 3)


def _round(x, n):
    return None if x is None else round(x, n)


COLUMNS = (("prio", "priority", "{}"), ("n", "agents", "{}"), ("asked", "asked_s", "{:.2f}"),
           ("spawn 1st", "first_spawn_s", "{:.2f}"), ("spawn last", "last_spawn_s", "{:.2f}"),
           ("ready 1st", "first_ready_s", "{:.2f}"), ("ready last", "last_ready_s", "{:.2f}"),
           ("seen", "seen_s", "{:.2f}"), ("RUNNING last", "last_running_s", "{:.2f}"),
           ("rpc", "rpc_s", "{:.3f}"), ("spread", "spread_s", "{:.3f}"),
           ("start-up", "startup_s", "{:.2f}"), ("agent med", "agent_startup_median_s",
                                                 "{:.2f}"),
           ("agent CPU", "agent_cpu_median_s", "{:.3f}"), ("react", "react_s", "{:.3f}"), ("handover", "handover_s", "{:.3f}"),
           ("CPU busy", "cpu_busy", "{:.0%}"))


def table(report: dict, title: str = "") -> str:
    """The report as a Markdown table, then the totals on one line."""
    head = "| " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = ([f"**{title}**", ""] if title else []) + [
        head, "|" + "---|" * len(COLUMNS)]
    for g in report["groups"]:
        lines.append("| " + " | ".join("–" if g.get(k) is None else fmt.format(g[k])
                                        for _, k, fmt in COLUMNS) + " |")
    t = report["totals"]
    lines.append("")
    lines.append("seconds from supervisord's start: " + ", ".join(
        f"{k.removesuffix('_s')} {v:.2f}" for k, v in t.items() if v is not None))
    return "\n".join(lines)


def median_report(reports: list[dict]) -> dict:
    """Group by group, the median of each number over several boots (same team)."""
    if not reports:
        return {"groups": [], "totals": {}}
    groups = []
    for rows in zip(*(r["groups"] for r in reports)):
        row = {}
        for key, value in rows[0].items():
            values = [r[key] for r in rows if isinstance(r.get(key), (int, float))
                      and not isinstance(r.get(key), bool)]
            if values and all(v == values[0] for v in values):
                row[key] = values[0]  # the same in every boot (priority, agents): as it is
            else:
                row[key] = round(statistics.median(values), 3) if values else value
        groups.append(row)
    keys = reports[0]["totals"].keys()
    tot = {}
    for k in keys:
        values = [r["totals"][k] for r in reports if r["totals"].get(k) is not None]
        tot[k] = round(statistics.median(values), 3) if values else None
    return {"groups": groups, "totals": tot, "runs": len(reports)}
