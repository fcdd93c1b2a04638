"""The compiled team: what the team file parses to, written by ``gen-config`` (``apply``,
``start``) next to the project's run files, so an agent starts without YAML and the checkers.

``data/run/<team file name>.snapshot`` holds, in ``marshal`` format (a C module of the
interpreter: nothing to import), the team file's exact bytes, a stamp of the code that parsed
it (the interpreter's version and the mtimes and sizes of the modules that build a Team) and
the Team, each dataclass as its module, class name and fields. ``load_team`` uses it only
when the team file's bytes and the stamp are the same as now; a missing, stale, unreadable or
foreign snapshot falls back to parsing the YAML, which is always the truth (the snapshot
never holds what the file does not say). Only coffee_team's own dataclasses are rebuilt from
it, through their constructors. A team holding a value the format cannot carry (a date in an
agent's ``options``) gets no snapshot, nor does one loaded while an ``ENVIRONMENT`` variable
is set: its agents read the YAML.

A library module: it reads and writes files, as ``parse`` does.
"""
from __future__ import annotations

import marshal
import os
import sys
from pathlib import Path
from typing import Any

FORMAT = 1
SUFFIX = ".snapshot"
# Environment variables that change what a team file loads to (COFFEE_DATABASE_URL replaces
# team.database_path, on Kubernetes): while one is set no snapshot is written or read, so a
# snapshot never holds a value from someone's environment (nor a password) and the YAML path
# applies them.
ENVIRONMENT = ("COFFEE_DATABASE_URL",)
# The modules whose code decides what a team file parses to (relative to coffee_team/).
_CODE = ("team", "llm", "taskstate.py")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Unsupported(TypeError):
    """A value the snapshot format does not carry: no snapshot for this team."""


def snapshot_path(team_path: str | os.PathLike[str]) -> Path:
    """Where the snapshot of this team file lives: the project's run directory (the project
    root is the directory that holds ``data/team.yaml``, as Team.root says)."""
    path = Path(team_path).resolve()
    return path.parent.parent / "data" / "run" / (path.name + SUFFIX)


def code_stamp() -> tuple:
    """The interpreter and the parsing code as they are now: a change to either makes every
    snapshot stale."""
    files = []
    for name in _CODE:
        where = os.path.join(_PACKAGE, name)
        try:
            names = sorted(n for n in os.listdir(where) if n.endswith(".py")) \
                if os.path.isdir(where) else [""]
        except OSError:
            names = []
        for file in names:
            try:
                st = os.stat(os.path.join(where, file) if file else where)
            except OSError:
                continue
            files.append((name, file, st.st_mtime_ns, st.st_size))
    return (sys.hexversion, _PACKAGE, tuple(files))


# --- encoding: plain values as they are; a tuple in the stream is always a tagged node -------

def _encode(value: Any) -> Any:
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    kind = type(value)
    if kind is tuple:
        return ("t", tuple(_encode(v) for v in value))
    if kind is list:
        return ("l", tuple(_encode(v) for v in value))
    if kind is dict:
        return ("d", tuple((_encode(k), _encode(v)) for k, v in value.items()))
    if kind is frozenset:
        return ("f", tuple(_encode(v) for v in value))
    if isinstance(value, Path):
        return ("p", str(value))
    fields = getattr(kind, "__dataclass_fields__", None)
    if fields is not None and kind.__module__.startswith("coffee_team."):
        if any(not f.init for f in fields.values()):
            raise Unsupported(f"{kind.__name__} has a field its constructor does not take")
        # only what differs from the field's default, which the constructor fills in: an
        # agent decodes every agent of its team, mostly defaults (~5× less to read at 100)
        return ("c", kind.__module__, kind.__qualname__,
                tuple((name, _encode(v)) for name, f in fields.items()
                      if not _is_default(v := getattr(value, name), f)))
    raise Unsupported(f"cannot carry a {kind.__name__}")


def _is_default(value: Any, field: Any) -> bool:
    """Is ``value`` the field's plain default (a default_factory's is not: it may differ)?"""
    from dataclasses import MISSING  # loaded: the value is a dataclass's
    default = field.default
    return default is not MISSING and type(value) is type(default) and value == default


def _decode(node: Any) -> Any:
    if type(node) is not tuple:
        return node
    tag = node[0]
    if tag == "t":
        return tuple(_decode(v) for v in node[1])
    if tag == "c":
        cls = _class(node[1], node[2])
        return cls(**{name: _decode(v) for name, v in node[3]})
    if tag == "l":
        return [_decode(v) for v in node[1]]
    if tag == "d":
        return {_decode(k): _decode(v) for k, v in node[1]}
    if tag == "f":
        return frozenset(_decode(v) for v in node[1])
    if tag == "p":
        return Path(node[1])
    raise ValueError(f"unknown node {tag!r}")


def _class(module: str, name: str) -> type:
    if not module.startswith("coffee_team.") or "." in name:
        raise ValueError(f"not a coffee_team class: {module}.{name}")
    __import__(module)
    cls = getattr(sys.modules[module], name)
    if not hasattr(cls, "__dataclass_fields__"):
        raise ValueError(f"not a dataclass: {module}.{name}")
    return cls


def encode(team: Any, team_bytes: bytes) -> bytes:
    """The snapshot of ``team``, parsed from ``team_bytes`` (its path is not kept: the
    reader's path is the team's, as when it parses the file)."""
    body = {name: _encode(getattr(team, name)) for name in ("settings", "agents", "hosts")}
    return marshal.dumps((FORMAT, code_stamp(), team_bytes, body))


def decode(data: bytes, team_bytes: bytes, path: str | os.PathLike[str]) -> Any | None:
    """The Team in ``data`` if it was made from ``team_bytes`` by this code, else None."""
    from .spec import Team
    try:
        fmt, stamp, source, body = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    if fmt != FORMAT or source != team_bytes or stamp != code_stamp():
        return None
    return Team(settings=_decode(body["settings"]), agents=_decode(body["agents"]),
                hosts=_decode(body["hosts"]), path=Path(path))


def write_snapshot(team_path: str | os.PathLike[str]) -> Path | None:
    """Parse the team file as it is now and write its snapshot; None (and no file: a stale
    one is removed) if the file does not parse or the team holds what the format cannot
    carry. Never raises for an unwritable run directory: agents then read the YAML."""
    from .parse import parse_team_text
    from ..errors import TeamError
    target = snapshot_path(team_path)
    if _overridden():
        _remove(target)
        return None
    try:
        team_bytes = Path(team_path).read_bytes()
        team = parse_team_text(team_bytes.decode("utf-8"), team_path)
        data = encode(team, team_bytes)
    except (OSError, UnicodeDecodeError, TeamError, Unsupported, ValueError):
        _remove(target)
        return None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError:
        _remove(tmp)
        return None
    return target


def _overridden() -> bool:
    return any(os.environ.get(name) for name in ENVIRONMENT)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def read_snapshot(team_path: str | os.PathLike[str]) -> Any | None:
    """The team from its snapshot, or None when there is no fresh one."""
    if _overridden():
        return None
    try:
        team_bytes = Path(team_path).read_bytes()
        data = snapshot_path(team_path).read_bytes()
    except OSError:
        return None
    try:
        return decode(data, team_bytes, team_path)
    except (TypeError, ValueError, KeyError, AttributeError, ImportError):
        return None  # a snapshot this code cannot rebuild: the YAML says the same


def load_team(path: str | os.PathLike[str] = "data/team.yaml", *,
              check_schedules: bool = True) -> Any:
    """As ``parse.load_team``, from the snapshot when it is fresh (an agent's start)."""
    team = read_snapshot(path)
    if team is not None:
        return team
    from .parse import load_team as parse_and_load
    return parse_and_load(path, check_schedules=check_schedules)
