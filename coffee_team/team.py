"""The team file (``data/team.yaml``) → frozen dataclasses, with strict, friendly validation.

Every error a user can make here becomes one ``TeamError`` line naming the file, the key path
and what is allowed. Paths in the team file are relative to the project root: the directory
that holds ``data/team.yaml``.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
HANDLER_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
TASK_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
HERE_MACRO = "%(here)s"
# supervisor's INI parser treats ';' or '#' after whitespace as the start of a comment.
INI_COMMENT = re.compile(r"\s[;#]")
MAX_INT = 2**31 - 1


class TeamError(Exception):
    """A user error in the team file; ``str()`` is the one line to show."""


@dataclass(frozen=True)
class HttpSettings:
    port: int
    username: str
    password_env: str
    host: str = "127.0.0.1"
    allow_remote: bool = False


@dataclass(frozen=True)
class AgentSpec:
    name: str
    priority: int = 5
    check_interval: float = 300.0
    auto_approve: bool = False
    timeout_seconds: float = 600.0
    memory_limit_mb: int | None = None
    handler: str | None = None
    command: tuple[str, ...] | None = None
    handles: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    restart_on_hang: bool = True
    cpu_warn_percent: float = 80.0
    rss_warn_mb: float = 256.0
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TeamSettings:
    database_path: str = "data/orchestrator.db"
    health_check_interval: float = 30.0
    max_restart_attempts: int = 3
    restart_backoff: float = 60.0
    restart_reset_after: float = 600.0
    restart_backoff_max: float = 3600.0
    max_queue_size: int = 1000
    cleanup_interval_hours: float = 24.0
    heartbeat_interval: float = 30.0
    heartbeat_stale_after: float = 300.0
    start_seconds: int = 1
    start_retries: int = 3
    stop_wait_seconds: int = 10
    python: str = ".venv/bin/python"
    require_branch: str | None = None
    http: HttpSettings | None = None


@dataclass(frozen=True)
class HostSpec:
    """One supervisord of a team spread over several hosts (``hosts:`` in the team file)."""
    name: str
    url: str  # unix:///path/supervisor.sock or http://host:port
    username: str | None = None
    password_env: str | None = None


@dataclass(frozen=True)
class Team:
    settings: TeamSettings
    agents: tuple[AgentSpec, ...]
    path: Path = field(default=Path("data/team.yaml"))
    hosts: tuple[HostSpec, ...] = ()

    @cached_property
    def root(self) -> Path:
        return self.path.resolve().parent.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def status_dir(self) -> Path:
        return self.data_dir / "agent_status"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def conf_dir(self) -> Path:
        return self.root / "supervisord.conf.d"

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "supervisord.conf"

    @property
    def database_url(self) -> str:
        """``postgresql://...`` as written; SQLite (a bare path or ``sqlite:///path``) as an
        absolute path, relative paths taken from the project root."""
        db = self.settings.database_path
        if db.startswith(PG_SCHEMES):
            return db
        if db.startswith("sqlite:///"):
            db = db[len("sqlite:///"):]
        return str(self.resolve(db))

    @property
    def is_postgres(self) -> bool:
        return self.settings.database_path.startswith(PG_SCHEMES)

    @property
    def wake_dir(self) -> str:
        return str(self.run_dir / "wake")

    def agent(self, name: str) -> AgentSpec:
        for spec in self.agents:
            if spec.name == name:
                return spec
        raise TeamError(f"{self.path}: no agent named {name!r} (known: {', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)


# --- field checkers: each returns the cleaned value or raises _Invalid(what is allowed) ---

class _Invalid(Exception):
    pass


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(lo: int = 0, hi: int = MAX_INT) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Invalid(f"an integer from {lo} to {hi}, got {_describe(v)}")
        if not lo <= v <= hi:
            raise _Invalid(f"an integer from {lo} to {hi}, got {v}")
        return v
    return check


def _positive_number(hi: float = 10**9) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) \
                or (isinstance(v, int) and abs(v) > hi) or not math.isfinite(v):
            raise _Invalid(f"a positive number up to {hi:g}, got {_describe(v)}")
        if not 0 < v <= hi:
            raise _Invalid(f"a positive number up to {hi:g}, got {v}")
        return float(v)
    return check


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(f"true or false, got {_describe(v)}")
    return v


def _ini_text(v: Any, what: str = "a string") -> str:
    if not isinstance(v, str) or not v:
        raise _Invalid(f"{what}, got {_describe(v)}")
    if "\n" in v or "\r" in v or "\x00" in v:
        raise _Invalid(f"{what} on one line, without NUL, got {_describe(v)}")
    if HERE_MACRO in v:
        raise _Invalid(f"{what} without {HERE_MACRO} (supervisor expands it everywhere), "
                       f"got {_describe(v)}")
    return v


def _path_text(v: Any) -> str:
    v = _ini_text(v, "a path")
    if INI_COMMENT.search(v):
        raise _Invalid(f"a path without ' ;' or ' #' (supervisor reads them as comments), got {_describe(v)}")
    return v


PG_SCHEMES = ("postgresql://", "postgres://")


def _database_path(v: Any) -> str:
    v = _path_text(v)
    if v.startswith(PG_SCHEMES):
        rest = v.split("://", 1)[1].split("?", 1)[0]
        if "/" not in rest or not rest.split("/", 1)[1]:
            raise _Invalid(f"a PostgreSQL URL naming a database, like "
                           f"postgresql://user@host/dbname, got {_describe(v)}")
        return v
    if v.startswith("sqlite:"):
        if not v.startswith("sqlite:///") or len(v) == len("sqlite:///"):
            raise _Invalid(f"sqlite:///relative/path.db or sqlite:////absolute/path.db, "
                           f"got {_describe(v)}")
        return v
    if "://" in v:
        raise _Invalid(f"a path, sqlite:///path or postgresql://user@host/db "
                       f"(unsupported scheme {v.split('://', 1)[0]!r}), got {_describe(v)}")
    return v


def _handler(v: Any) -> str:
    if not isinstance(v, str) or not HANDLER_REF.fullmatch(v):
        raise _Invalid(f"'package.module:function', got {_describe(v)}")
    return v


def _command(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise _Invalid(f"a non-empty list of arguments, e.g. [python3, worker.py], got {_describe(v)}")
    return tuple(_ini_text(a, "each argument a non-empty string") for a in v)


def _task_types(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _Invalid(f"a list of task types, got {_describe(v)}")
    for t in v:
        if not isinstance(t, str) or not TASK_TYPE.fullmatch(t):
            raise _Invalid(f"task types made of letters, digits, '_', '.', '-', got {_describe(t)}")
    return tuple(v)


def _environment(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        raise _Invalid(f"a mapping of NAME: value, got {_describe(v)}")
    pairs = []
    for key, value in v.items():
        if not isinstance(key, str) or not ENV_KEY.fullmatch(key):
            raise _Invalid(f"variable names like MY_VAR, got {_describe(key)}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Invalid(f"a string value for {key}, got {_describe(value)}")
        text = str(value)
        # supervisor's environment= parser cannot escape these; refuse rather than mangle.
        if HERE_MACRO in text or any(c in text for c in '"\n\r\x00') or text[:1] == "'" or text[-1:] == "'" \
                or INI_COMMENT.search(text):
            raise _Invalid(f"a value for {key} without '\"', newlines, leading/trailing \"'\" "
                           f"or ' ;'/' #', got {_describe(text)}")
        pairs.append((key, text))
    return tuple(pairs)


def _options(v: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise _Invalid(f"a mapping of option names to values, got {_describe(v)}")
    return tuple(sorted(v.items()))


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


TEAM_FIELDS: dict[str, Callable[[Any], Any]] = {
    "database_path": _database_path,
    "health_check_interval": _positive_number(),
    "max_restart_attempts": _integer(0, 1000),
    "restart_backoff": _positive_number(10**6),
    "restart_reset_after": _positive_number(),
    "restart_backoff_max": _positive_number(10**6),
    "max_queue_size": _integer(1, 10**9),
    "cleanup_interval_hours": _positive_number(10**6),
    "heartbeat_interval": _positive_number(),
    "heartbeat_stale_after": _positive_number(),
    "start_seconds": _integer(0, 3600),
    "start_retries": _integer(0, 1000),
    "stop_wait_seconds": _integer(1, 3600),
    "python": _path_text,
    "require_branch": _optional(lambda v: _ini_text(v, "a git branch name")),
}

AGENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "priority": _integer(0, 999),
    "check_interval": _positive_number(),
    "auto_approve": _boolean,
    "timeout_seconds": _positive_number(),
    "memory_limit_mb": _optional(_integer(1, 10**7)),
    "handler": _handler,
    "command": _command,
    "handles": _task_types,
    "environment": _environment,
    "restart_on_hang": _boolean,
    "cpu_warn_percent": _positive_number(10**5),
    "rss_warn_mb": _positive_number(10**7),
    "options": _options,
}

HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")
USER_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 (what [inet_http_server] may bind without allow_remote)."""
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def _http_host(v: Any) -> str:
    # supervisor's inet server is IPv4 only and reads "host:port": no IPv6 literals, no '*'.
    if not isinstance(v, str) or not HOST_NAME.fullmatch(v):
        raise _Invalid(f"an IPv4 address or host name such as 127.0.0.1, got {_describe(v)}")
    return v


def _env_name(v: Any) -> str:
    if not isinstance(v, str) or not ENV_KEY.fullmatch(v):
        raise _Invalid(f"the name of an environment variable like COFFEE_RPC_PASSWORD, "
                       f"got {_describe(v)}")
    return v


def _user_name(v: Any) -> str:
    # HTTP basic auth splits at the first ':'; keep names plain.
    if not isinstance(v, str) or not USER_NAME.fullmatch(v):
        raise _Invalid(f"a user name of letters, digits and '_.@+-', got {_describe(v)}")
    return v


def _host_url(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"(unix://\S+|https?://[^\s/]+/?)", v):
        raise _Invalid(f"unix:///path/to/supervisor.sock or http://host:port, got {_describe(v)}")
    return v


HOST_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: _ini_text(v, "a host name"),
    "url": _host_url,
    "username": _user_name,
    "password_env": _env_name,
}


def _hosts(doc: Any, source: str) -> tuple[HostSpec, ...]:
    if not isinstance(doc, list) or not doc:
        raise TeamError(f"{source}: hosts: expected a list of {{name, url}} mappings, "
                        f"got {_describe(doc)}")
    hosts: list[HostSpec] = []
    for i, item in enumerate(doc):
        values = _fields(item, HOST_FIELDS, f"hosts[{i}]", source)
        missing = {"name", "url"} - set(values)
        if missing:
            raise TeamError(f"{source}: hosts[{i}]: missing {', '.join(sorted(missing))}")
        if any(h.name == values["name"] for h in hosts):
            raise TeamError(f"{source}: hosts[{i}].name: duplicate host {values['name']!r}")
        hosts.append(HostSpec(**values))
    return tuple(hosts)


HTTP_FIELDS: dict[str, Callable[[Any], Any]] = {
    "port": _integer(1, 65535),
    "username": _user_name,
    "password_env": _env_name,
    "host": _http_host,
    "allow_remote": _boolean,
}


def _key(key: Any) -> str:
    """A key as it may appear in a one-line message."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key and key \
        else _describe(key)


def _fields(mapping: Any, schema: Mapping[str, Callable[[Any], Any]], where: str,
            source: str, also_allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise TeamError(f"{source}: {where}: expected a mapping, got {_describe(mapping)}")
    cleaned = {}
    for key, value in mapping.items():
        path = f"{where}.{_key(key)}" if where else _key(key)
        if key not in schema:
            allowed = ", ".join(sorted([*schema, *also_allowed]))
            raise TeamError(f"{source}: {path}: unknown key (allowed: {allowed})")
        try:
            cleaned[key] = schema[key](value)
        except _Invalid as exc:
            raise TeamError(f"{source}: {path}: expected {exc}") from None
    return cleaned


def parse_team(document: Any, source: str = "<team>", path: Path | None = None) -> Team:
    """Validate an already-parsed YAML document into a ``Team`` (pure: no file access)."""
    if not isinstance(document, dict):
        raise TeamError(f"{source}: expected a mapping with 'team:' and 'agents:' at the top")
    _fields(document, {"team": lambda v: v, "agents": lambda v: v, "hosts": lambda v: v},
            "", source)
    team_doc = document.get("team")
    team_doc = {} if team_doc is None else team_doc
    http_doc = None
    if isinstance(team_doc, dict):
        team_doc = dict(team_doc)
        http_doc = team_doc.pop("http", None)
    settings = TeamSettings(**_fields(team_doc, TEAM_FIELDS, "team", source, ("http",)))
    if http_doc is not None:
        http = _fields(http_doc, HTTP_FIELDS, "team.http", source)
        missing = {"port", "username", "password_env"} - set(http)
        if missing:
            raise TeamError(f"{source}: team.http: missing {', '.join(sorted(missing))}")
        http_settings = HttpSettings(**http)
        if not http_settings.allow_remote and not is_loopback(http_settings.host):
            raise TeamError(f"{source}: team.http.host: {http_settings.host!r} is not a loopback "
                            f"address; the XML-RPC API controls every agent, so set "
                            f"allow_remote: true to expose it on purpose")
        settings = TeamSettings(**{**settings.__dict__, "http": http_settings})
    agents_doc = document.get("agents")
    if not isinstance(agents_doc, dict) or not agents_doc:
        raise TeamError(f"{source}: agents: expected a mapping of agent names to settings "
                        f"with at least one agent")
    agents = []
    for name, agent_doc in agents_doc.items():
        if not isinstance(name, str) or not AGENT_NAME.fullmatch(name):
            raise TeamError(f"{source}: agents.{_key(name)}: bad agent name (allowed: lowercase "
                            f"letters, digits, '_' and '-', at most 64, starting with a "
                            f"letter or digit)")
        values = _fields(agent_doc, AGENT_FIELDS, f"agents.{name}", source)
        if "handler" in values and "command" in values:
            raise TeamError(f"{source}: agents.{name}: set either 'handler' or 'command', not both")
        agents.append(AgentSpec(name=name, **values))
    _check_timing(settings, source)
    hosts = _hosts(document["hosts"], source) if "hosts" in document else ()
    return Team(settings=settings, agents=tuple(agents), path=path or Path(source), hosts=hosts)


def _check_timing(settings: TeamSettings, source: str) -> None:
    if settings.heartbeat_stale_after <= settings.heartbeat_interval:
        raise TeamError(f"{source}: team.heartbeat_stale_after: expected more than "
                        f"heartbeat_interval ({settings.heartbeat_interval:g}), "
                        f"got {settings.heartbeat_stale_after:g}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # '<<: *anchor' values may be overridden by explicit keys
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            raise TeamError(f"line {key_node.start_mark.line + 1}: a key must be a plain "
                            f"value, not a list or mapping") from None
        if duplicate:
            raise TeamError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_team(path: str | os.PathLike[str] = "data/team.yaml") -> Team:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TeamError(f"{path}: team file not found (create it, or pass --team PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TeamError(f"{path}: cannot read team file: {exc}") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except TeamError as exc:
        raise TeamError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TeamError(f"{path}: {where}invalid YAML: {problem}") from None
    return parse_team(document, str(path), path)
