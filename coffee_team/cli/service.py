"""Start on boot: a systemd unit that runs this project's supervisord in the foreground.

``unit_text`` is pure (the same team and paths give the same text); ``unit_path`` says where
it goes: ``~/.config/systemd/user`` with ``--user`` (starts with the user's session, or at
boot with ``loginctl enable-linger``), ``/etc/systemd/system`` otherwise.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..team import Team


def unit_name(team: Team) -> str:
    """coffee-team-<directory>-<hash of the path>.service: two clones never share a unit."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", team.root.name).strip("-") or "project"
    digest = hashlib.sha256(str(team.root).encode()).hexdigest()[:8]
    return f"coffee-team-{slug}-{digest}.service"


def unit_dir(user: bool) -> Path:
    if user:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user"
    return Path("/etc/systemd/system")


def unit_path(team: Team, user: bool) -> Path:
    return unit_dir(user) / unit_name(team)


def _escape(text: str) -> str:
    """A value for a unit file: '%' starts a systemd specifier, '\\' an escape."""
    return text.replace("\\", "\\\\").replace("%", "%%")


def _quote(arg: str) -> str:
    return '"' + _escape(arg).replace('"', '\\"') + '"'


def unit_text(team: Team, supervisord: str, user: bool) -> str:
    conf = str(team.conf_file)
    lines = [
        "# Written by `coffee-team service install`; remove with `coffee-team service uninstall`.",
        "[Unit]",
        f"Description=coffee-team agents in {_escape(str(team.root))}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        # supervisord in the foreground (-n): systemd watches it and restarts it on a failure.
        f"ExecStart={_quote(supervisord)} -n -c {_quote(conf)}",
        f"WorkingDirectory={_escape(str(team.root))}",
        "Environment=PYTHONUNBUFFERED=1",
        # team.http's password variable and anything else the team needs, if the file exists.
        f"EnvironmentFile=-{_escape(str(team.data_dir / 'service.env'))}",
        "Restart=on-failure",
        "RestartSec=5",
        # SIGTERM to supervisord only: it stops the agents gracefully itself.
        "KillMode=mixed",
        f"TimeoutStopSec={team.settings.stop_wait_seconds + 30}",
    ]
    if not user:
        lines.append(f"User={getpass.getuser()}")
    lines += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}"]
    return "\n".join(lines) + "\n"


def systemctl(user: bool, *args: str) -> tuple[bool, str]:
    """Run systemctl; (ok, what it said). Missing systemctl is (False, why)."""
    binary = shutil.which("systemctl")
    if binary is None:
        return False, "systemctl not found"
    command = [binary, *(["--user"] if user else []), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    said = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, said[-1] if said else f"exit {done.returncode}"
