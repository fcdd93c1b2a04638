"""One status view over a team spread across several hosts (one supervisord each).

Each host is asked for ``coffee.getTeamStatus`` over its XML-RPC server (``unix://`` or
``http://``), all at once with a timeout; a host that does not answer is reported as not
reachable instead of failing the whole view.
"""
from __future__ import annotations

import os
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from .. import client
from ..team.fields import Invalid, host_url
from ..errors import TeamError, error_line, first_line
from ..team import HostSpec

DEFAULT_TIMEOUT = 5.0


def parse_hosts_option(text: str) -> tuple[HostSpec, ...]:
    """``--hosts URL,URL`` or ``--hosts name=URL,name=URL`` → HostSpecs (name defaults to
    the URL).  Credentials come from SUPERVISOR_USERNAME / SUPERVISOR_PASSWORD."""
    hosts: list[HostSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            name, url = item, item
        try:
            host_url(url)
        except Invalid as exc:
            raise TeamError(f"--hosts: {item!r}: expected {exc}") from None
        if any(h.name == name for h in hosts):
            raise TeamError(f"--hosts: duplicate host {name!r}")
        hosts.append(HostSpec(name=name, url=url))
    if not hosts:
        raise TeamError("--hosts: expected URL[,URL...] or name=URL[,...]")
    return tuple(hosts)


def endpoint(host: HostSpec) -> client.Endpoint:
    username = host.username or os.environ.get("SUPERVISOR_USERNAME")
    if host.password_env:
        password = os.environ.get(host.password_env)
    else:
        password = os.environ.get("SUPERVISOR_PASSWORD")
    return client.Endpoint(host.url, username, password)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, xmlrpc.client.Fault):
        return first_line(exc.faultString) or type(exc).__name__
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return first_line(f"HTTP {exc.errcode} {exc.errmsg}")
    return error_line(exc)


def _ask(host: HostSpec, timeout: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": host.name, "url": host.url}
    try:
        status = client.call(endpoint(host), "coffee.getTeamStatus", timeout=timeout)
    except Exception as exc:  # down, refused, timeout, 401, no coffee namespace, ...
        entry.update(reachable=False, error=_one_line(exc))
        return entry
    for agent in status.get("agents", []):
        agent.setdefault("heartbeat_age_seconds", None)
    entry.update(reachable=True, status=status)
    return entry


def collect(hosts: Iterable[HostSpec], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """``{"hosts": [{name, url, reachable, status | error}], agents_running, agents_total}``"""
    hosts = list(hosts)
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(hosts)))) as pool:
        entries = list(pool.map(lambda h: _ask(h, timeout), hosts))
    from ..status import is_active, is_standby
    agents = [a for e in entries if e["reachable"] for a in e["status"].get("agents", [])]
    return {
        "hosts": entries,
        "hosts_reachable": sum(1 for e in entries if e["reachable"]),
        "agents_running": sum(1 for a in agents if is_active(a)),
        "agents_standby": sum(1 for a in agents if is_standby(a)),
        "agents_total": len(agents),
    }


def render(data: dict[str, Any]) -> str:
    from ..status import human_duration
    header = ("HOST", "AGENT", "STATE", "PID", "UPTIME", "CPU%", "RAM MB", "HEARTBEAT", "RESTARTS",
              "ACTIVITY")
    rows = []
    for entry in data["hosts"]:
        if not entry["reachable"]:
            continue
        for a in entry["status"].get("agents", []):
            running = a.get("state") == "RUNNING"
            beat = a.get("heartbeat_age_seconds")
            restarts = str(a.get("restarts", 0) or 0) + (" GIVEN UP" if a.get("given_up") else "")
            rows.append((entry["name"], a["name"], a.get("state", "?"),
                         str(a.get("pid") or "-") if running else "-",
                         human_duration(a.get("uptime_seconds", 0)) if running else "-",
                         f"{a.get('cpu_percent', 0.0):.1f}" if running else "-",
                         f"{a.get('rss_mb', 0.0):.0f}" if running else "-",
                         f"{beat:.0f}s ago" if beat is not None else "-", restarts,
                         a.get("activity", "") if running else ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    standby = f", {data['agents_standby']} standby" if data.get("agents_standby") else ""
    lines = [f"Team over {len(data['hosts'])} host(s), {data['hosts_reachable']} reachable; "
             f"agents running {data['agents_running']}/{data['agents_total']}{standby}", ""]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    down = [e for e in data["hosts"] if not e["reachable"]]
    if down:
        lines.append("")
        lines += [f"host {e['name']}: not reachable ({e['error']})" for e in down]
    return "\n".join(lines)
