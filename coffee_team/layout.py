"""The project's directories and the generated config on disk (the I/O edge of confgen)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from .errors import TeamError
from .team.spec import Team

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def check_project_path(team: Team) -> None:
    """Refuse a project path holding '%': supervisord expands ``%(here)s`` and then reads the
    result as a format string again in places (log file names), so such a clone cannot boot
    whatever the generated config escapes ("Format string ... is badly formatted")."""
    if "%" in str(team.root):
        raise TeamError(f"{team.root}: the project path holds '%', which supervisord cannot "
                        f"read in its config; move or rename the directory")


def ensure_data_dirs(team: Team) -> None:
    """Create data/, its run, log and status dirs, private to the owner (even if they exist).

    Every directory is tried before the first failure is raised: one that cannot be made (the
    status dir replaced by a file) leaves the others usable for a caller that goes on."""
    failures = []
    for directory in (team.data_dir, team.run_dir, team.log_dir, team.status_dir,
                      Path(team.wake_dir)):
        try:
            directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            os.chmod(directory, PRIVATE_DIR)
        except OSError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


# A NamedTuple, not a frozen dataclass: cheaper to create at import (see liveness.Stall).
class ConfigDiff(NamedTuple):
    """What gen-config would change on disk."""
    changed: tuple[str, ...]   # files whose text differs or that are missing
    stale: tuple[str, ...]     # generated files on disk that the team no longer has

    @property
    def clean(self) -> bool:
        return not self.changed and not self.stale


def _generated_on_disk(conf_dir: Path) -> set[str]:
    from . import confgen
    if not conf_dir.is_dir():
        return set()
    return {p.name for p in conf_dir.glob("agent-*.conf")} | (
        {confgen.MAIN_FILE} if (conf_dir / confgen.MAIN_FILE).exists() else set())


def diff_config(team: Team) -> ConfigDiff:
    # confgen imported here: agents and `status` reach this module for its file helpers only
    from . import confgen
    wanted = confgen.render(team)
    changed = []
    for name, text in sorted(wanted.items()):
        path = team.conf_dir / name
        try:
            current = path.read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            current = None
        if current != text:
            changed.append(name)
    stale = sorted(_generated_on_disk(team.conf_dir) - set(wanted))
    return ConfigDiff(tuple(changed), tuple(stale))


def generated_commands(team: Team) -> dict[str, list[str]]:
    """Each program of the generated config on disk (``program:x``, ``eventlistener:x``) and
    its argv as supervisord will run it (``%(here)s`` expanded, ``%%`` unescaped)."""
    import re
    import shlex
    commands: dict[str, list[str]] = {}
    files = [team.conf_file, *sorted(team.conf_dir.glob("agent-*.conf"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        section = None
        for line in text.splitlines():
            header = re.match(r"\[(?:program|eventlistener):(.+)\]$", line)
            if line.startswith("["):
                section = header.group(1) if header else None
            elif section and line.startswith("command="):
                value = line[len("command="):].replace("%(here)s", str(team.conf_dir))
                try:
                    commands[section] = shlex.split(value.replace("%%", "%"))
                except ValueError:
                    commands[section] = [value]
    return commands


def write_config(team: Team) -> ConfigDiff:
    """Bring ``supervisord.conf.d/`` in line with the team, and write the team's snapshot;
    returns what had to change in the config."""
    from . import confgen
    diff = diff_config(team)
    team.conf_dir.mkdir(parents=True, exist_ok=True)
    wanted = confgen.render(team)
    for name in diff.changed:
        path = team.conf_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(wanted[name], encoding="utf-8")
        os.replace(tmp, path)
    for name in diff.stale:
        (team.conf_dir / name).unlink()
    # the compiled team agents start from (team/snapshot.py): a cache, never the truth
    from .team.snapshot import write_snapshot
    write_snapshot(team.path)
    return diff


def atomic_write_private(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
