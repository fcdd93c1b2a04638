"""What a team file may hold: one checker per field, each returning the cleaned value or
raising ``Invalid`` with what is allowed (``parse`` adds the file and the key path). The
checkers and their builders (``integer(lo, hi)``, ``choice(...)``, ``optional(check)``) are
public: ``team/llm.py`` checks its keys with them.

Pure: no file access. Values that reach supervisor's INI are refused here when supervisor's
parser could not carry them (newlines, '%(here)s', ' ;'/' #' comments, unquotable quotes).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from ..dburl import is_postgres_url
from ..events import NOTIFICATION_LEVELS

AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
HANDLER_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
TASK_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
HERE_MACRO = "%(here)s"
# supervisor's INI parser treats ';' or '#' after whitespace as the start of a comment.
INI_COMMENT = re.compile(r"\s[;#]")
MAX_INT = 2**31 - 1


class Invalid(Exception):
    """A field value outside what is allowed; ``str()`` says what is."""


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(lo: int = 0, hi: int = MAX_INT) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise Invalid(f"an integer from {lo} to {hi}, got {describe(v)}")
        if not lo <= v <= hi:
            raise Invalid(f"an integer from {lo} to {hi}, got {v}")
        return v
    return check


def positive_number(hi: float = 10**9) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) \
                or (isinstance(v, int) and abs(v) > hi) or not math.isfinite(v):
            raise Invalid(f"a positive number up to {hi:g}, got {describe(v)}")
        if not 0 < v <= hi:
            raise Invalid(f"a positive number up to {hi:g}, got {v}")
        return float(v)
    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Invalid(f"true or false, got {describe(v)}")
    return v


def ini_text(v: Any, what: str = "a string") -> str:
    if not isinstance(v, str) or not v:
        raise Invalid(f"{what}, got {describe(v)}")
    if "\n" in v or "\r" in v or "\x00" in v:
        raise Invalid(f"{what} on one line, without NUL, got {describe(v)}")
    if HERE_MACRO in v:
        raise Invalid(f"{what} without {HERE_MACRO} (supervisor expands it everywhere), "
                       f"got {describe(v)}")
    return v


def path_text(v: Any) -> str:
    v = ini_text(v, "a path")
    if INI_COMMENT.search(v):
        raise Invalid(f"a path without ' ;' or ' #' (supervisor reads them as comments), got {describe(v)}")
    return v




def database_path(v: Any) -> str:
    v = path_text(v)
    if is_postgres_url(v):
        rest = v.split("://", 1)[1].split("?", 1)[0]
        if "/" not in rest or not rest.split("/", 1)[1]:
            raise Invalid(f"a PostgreSQL URL naming a database, like "
                           f"postgresql://user@host/dbname, got {describe(v)}")
        return v
    if v.startswith("sqlite:"):
        if not v.startswith("sqlite:///") or len(v) == len("sqlite:///"):
            raise Invalid(f"sqlite:///relative/path.db or sqlite:////absolute/path.db, "
                           f"got {describe(v)}")
        return v
    if "://" in v:
        raise Invalid(f"a path, sqlite:///path or postgresql://user@host/db "
                       f"(unsupported scheme {v.split('://', 1)[0]!r}), got {describe(v)}")
    return v


def handler(v: Any) -> str:
    if not isinstance(v, str) or not HANDLER_REF.fullmatch(v):
        raise Invalid(f"'package.module:function', got {describe(v)}")
    return v


def command(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v:
        raise Invalid(f"a non-empty list of arguments, e.g. [python3, worker.py], got {describe(v)}")
    return tuple(ini_text(a, "each argument a non-empty string") for a in v)


def task_types(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise Invalid(f"a list of task types, got {describe(v)}")
    for t in v:
        if not isinstance(t, str) or not TASK_TYPE.fullmatch(t):
            raise Invalid(f"task types made of letters, digits, '_', '.', '-', got {describe(t)}")
    return tuple(v)


def environment(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        raise Invalid(f"a mapping of NAME: value, got {describe(v)}")
    pairs = []
    for key, value in v.items():
        if not isinstance(key, str) or not ENV_KEY.fullmatch(key):
            raise Invalid(f"variable names like MY_VAR, got {describe(key)}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise Invalid(f"a string value for {key}, got {describe(value)}")
        text = str(value)
        # supervisor's environment= parser cannot escape these; refuse rather than mangle.
        if HERE_MACRO in text or any(c in text for c in '"\n\r\x00') or text[:1] == "'" or text[-1:] == "'" \
                or INI_COMMENT.search(text):
            raise Invalid(f"a value for {key} without '\"', newlines, leading/trailing \"'\" "
                           f"or ' ;'/' #', got {describe(text)}")
        pairs.append((key, text))
    return tuple(pairs)


def secrets(v: Any) -> tuple[str, ...]:
    """``secrets:``: the environment variables that hold an agent's secrets (an API key),
    never written in the team file: supervisord's agents inherit them from its environment,
    ``gen-k8s`` takes them from the Kubernetes Secret."""
    if not isinstance(v, list):
        raise Invalid(f"a list of variable names like [ANTHROPIC_API_KEY], got {describe(v)}")
    for i, name in enumerate(v):
        if not isinstance(name, str) or not ENV_KEY.fullmatch(name):
            raise Invalid(f"variable names like ANTHROPIC_API_KEY, got {describe(name)}")
        if name in v[:i]:
            raise Invalid(f"each name once, got {name} twice")
    return tuple(v)


CPU_MILLI = re.compile(r"^([1-9][0-9]{0,6})m$")
MAX_CPU = 1024  # cores


def cpu(v: Any) -> str:
    """``cpu:`` as Kubernetes writes a CPU quantity: cores (``2``, ``0.5``) or millicores
    (``500m``), kept as the canonical string (``0.5`` → ``500m``, ``2000m`` → ``2``)."""
    allowed = f"cores (0.5, 2) or millicores ('500m'), at most {MAX_CPU} cores"
    match = CPU_MILLI.fullmatch(v) if isinstance(v, str) else None
    if match:
        milli = int(match.group(1))
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
            and 0 < v <= MAX_CPU:
        milli = round(v * 1000)
        if abs(v * 1000 - milli) > 1e-6 or milli == 0:
            raise Invalid(f"{allowed}, in whole millicores (three decimals), got {v!r}")
    else:
        raise Invalid(f"{allowed}, got {describe(v)}")
    if milli > MAX_CPU * 1000:
        raise Invalid(f"{allowed}, got {describe(v)}")
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def options(v: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise Invalid(f"a mapping of option names to values, got {describe(v)}")
    return tuple(sorted(v.items()))


# A time zone's shape (Area/City, UTC); whether it exists is asked of zoneinfo only where
# schedules are evaluated (team/parse.py's check_schedules).
ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


def zone_name(v: Any) -> str:
    if not isinstance(v, str) or len(v) > 64 or not ZONE.match(v):
        raise Invalid(f"a time zone name like Europe/Paris or UTC, got {describe(v)}")
    return v


def choice(*allowed: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in allowed:
            raise Invalid(f"one of {', '.join(allowed)}, got {describe(v)}")
        return v
    return check


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


TEAM_FIELDS: dict[str, Callable[[Any], Any]] = {
    "database_path": database_path,
    "health_check_interval": positive_number(),
    "max_restart_attempts": integer(0, 1000),
    "restart_backoff": positive_number(10**6),
    "restart_reset_after": positive_number(),
    "restart_backoff_max": positive_number(10**6),
    "max_queue_size": integer(1, 10**9),
    "cleanup_interval_hours": positive_number(10**6),
    "heartbeat_interval": positive_number(),
    "heartbeat_stale_after": positive_number(),
    "lease_seconds": positive_number(),
    "start_seconds": integer(0, 3600),
    "start_retries": integer(0, 1000),
    "stop_wait_seconds": integer(1, 3600),
    "python": path_text,
    "require_branch": optional(lambda v: ini_text(v, "a git branch name")),
    "escalate_after": optional(positive_number(10**7)),
    "host_name": optional(lambda v: host_name(v)),  # defined below, with the other names
    "timezone": optional(zone_name),
}

AGENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "priority": integer(0, 999),
    "check_interval": positive_number(),
    "auto_approve": boolean,
    "timeout_seconds": optional(positive_number()),
    "memory_limit_mb": optional(integer(1, 10**7)),
    "handler": handler,
    "command": command,
    "handles": task_types,
    "approve_before": task_types,
    "environment": environment,
    "secrets": secrets,
    "cpu": cpu,
    "restart_on_hang": boolean,
    "stall_after": optional(positive_number()),
    "on_stall": choice("warn", "cancel"),
    "cpu_warn_percent": positive_number(10**5),
    "rss_warn_mb": positive_number(10**7),
    "options": options,
}

def retry_on(v: Any) -> tuple[int | str, ...]:
    if not isinstance(v, list):
        raise Invalid(f"a list of exit codes and regular expressions, got {describe(v)}")
    for rule in v:
        if isinstance(rule, bool) or not isinstance(rule, (int, str)) \
                or (isinstance(rule, int) and not -255 <= rule <= 255):
            raise Invalid(f"exit codes (-255..255) and regular expressions, got {describe(rule)}")
        if isinstance(rule, str):
            try:
                re.compile(rule)
            except re.error as exc:
                raise Invalid(f"a valid regular expression, got {describe(rule)} ({exc})") from None
    return tuple(v)


# ``retry:`` of an agent or of the team (the default for agents without one).
RETRY_FIELDS: dict[str, Callable[[Any], Any]] = {
    "attempts": integer(1, 1000),
    "backoff": positive_number(10**6),
    "max_backoff": positive_number(10**7),
    "on": retry_on,
}

# ``team.notify``: where notifications go. A url is an Apprise URL (its scheme is checked
# against Apprise itself by notify.check_targets, which needs the optional package);
# ``sound=`` is refused because background agents are silent (CFR-009).
NOTIFY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
SOUND_PARAM = re.compile(r"[?&]sound=(?!none(&|$))", re.I)




def notify_url(v: Any) -> str:
    if not isinstance(v, str) or not NOTIFY_URL.fullmatch(v):
        raise Invalid(f"an Apprise URL like json://host/path or ntfy://topic, got {describe(v)}")
    if SOUND_PARAM.search(v):
        raise Invalid(f"a URL without sound= (notifications are silent, CFR-009), "
                      f"got {describe(v)}")
    return v


NOTIFY_FIELDS: dict[str, Callable[[Any], Any]] = {
    "level": choice(*NOTIFICATION_LEVELS),
    "url": notify_url,
    "command": command,
    "name": lambda v: ini_text(v, "a short name"),
}

HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$")
USER_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 (what team.http and team.web may bind without
    allow_remote)."""
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def matching(pattern: re.Pattern[str], allowed: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not pattern.fullmatch(v):
            raise Invalid(f"{allowed}, got {describe(v)}")
        return v
    return check


# The web program's servers are IPv4 (http.server's AF_INET): no IPv6 literals, no '*'.
http_host = matching(HOST_NAME, "an IPv4 address or host name such as 127.0.0.1")
host_name = matching(HOST_NAME, "a host name of letters, digits, '.' and '-'")
env_name = matching(ENV_KEY, "the name of an environment variable like COFFEE_RPC_PASSWORD")
# HTTP basic auth splits at the first ':'; keep names plain.
user_name = matching(USER_NAME, "a user name of letters, digits and '_.@+-'")
host_url = matching(re.compile(r"unix://\S+|https?://[^\s/]+/?"),
                     "unix:///path/to/supervisor.sock or http://host:port")


HOST_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: ini_text(v, "a host name"),
    "url": host_url,
    "username": user_name,
    "password_env": env_name,
}


HTTP_FIELDS: dict[str, Callable[[Any], Any]] = {
    "port": integer(1, 65535),
    "username": user_name,
    "password_env": env_name,
    "host": http_host,
    "allow_remote": boolean,
    "head_timeout": positive_number(3600),
}
