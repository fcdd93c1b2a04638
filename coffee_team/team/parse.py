"""The team file (``data/team.yaml``) → frozen dataclasses (``spec``), with strict,
friendly validation.

Every error a user can make here becomes one ``TeamError`` line naming the file, the key path
and what is allowed. Paths in the team file are relative to the project root: the directory
that holds ``data/team.yaml``. The llm package's checkers are imported only for a team file
that has llm agents or budgets: every agent loads this file, most never run an llm.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..errors import TeamError, error_line
from ..liveness import MIN_LEASE_SECONDS
from .fields import (AGENT_FIELDS, AGENT_NAME, HOST_FIELDS, HTTP_FIELDS, NOTIFY_FIELDS,
                     RETRY_FIELDS, TEAM_FIELDS, Invalid, describe)
from ..taskstate import RetryPolicy
from .spec import (WEB_PROGRAM, AgentSpec, HostSpec, HttpSettings, NotifyTarget,  # noqa: F401
                       Team, TeamSettings, check_http)


def _hosts(doc: Any, source: str) -> tuple[HostSpec, ...]:
    if not isinstance(doc, list) or not doc:
        raise TeamError(f"{source}: hosts: expected a list of {{name, url}} mappings, "
                        f"got {describe(doc)}")
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


def _key(key: Any) -> str:
    """A key as it may appear in a one-line message."""
    return key if isinstance(key, str) and key.isprintable() and key.strip() == key and key \
        else describe(key)


def _fields(mapping: Any, schema: Mapping[str, Callable[[Any], Any]], where: str,
            source: str, also_allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise TeamError(f"{source}: {where}: expected a mapping, got {describe(mapping)}")
    cleaned = {}
    for key, value in mapping.items():
        path = f"{where}.{_key(key)}" if where else _key(key)
        if key not in schema:
            allowed = ", ".join(sorted([*schema, *also_allowed]))
            raise TeamError(f"{source}: {path}: unknown key (allowed: {allowed})")
        try:
            cleaned[key] = schema[key](value)
        except Invalid as exc:
            raise TeamError(f"{source}: {path}: expected {exc}") from None
    return cleaned


def parse_team(document: Any, source: str = "<team>", path: Path | None = None, *,
               check_schedules: bool = True) -> Team:
    """Validate an already-parsed YAML document into a ``Team`` (pure: no file access).
    ``check_schedules`` False (an agent, which never evaluates them) checks the shape of cron
    expressions and time zones only, without importing cronsim and zoneinfo."""
    if not isinstance(document, dict):
        raise TeamError(f"{source}: expected a mapping with 'team:' and 'agents:' at the top")
    _fields(document, {"team": lambda v: v, "agents": lambda v: v, "hosts": lambda v: v},
            "", source)
    team_doc = document.get("team")
    team_doc = {} if team_doc is None else team_doc
    http_doc = web_doc = None
    team_retry = team_budget = None
    if isinstance(team_doc, dict):
        team_doc = dict(team_doc)
        http_doc = team_doc.pop("http", None)
        web_doc = team_doc.pop("web", None)
        team_retry = _retry(team_doc.pop("retry", None), "team.retry", source)
        notify = _notify(team_doc.pop("notify", None), source)
        if "budget" in team_doc:
            team_budget = _nested(team_doc.pop("budget"), "budget", "team.budget", source)
    else:
        notify = ()
    settings = TeamSettings(**_fields(team_doc, TEAM_FIELDS, "team", source,
                                      ("http", "notify", "retry", "web", "budget")),
                            retry=team_retry, notify=notify, budget=team_budget)
    if http_doc is not None:
        settings = TeamSettings(**{**settings.__dict__,
                                   "http": _server(http_doc, "team.http", source)})
    if web_doc is not None:
        settings = TeamSettings(**{**settings.__dict__, "web": _server(
            web_doc, "team.web", source, what="the dashboard")})
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
        retry, extras = None, {}
        if isinstance(agent_doc, dict):
            agent_doc = dict(agent_doc)
            retry = _retry(agent_doc.pop("retry", None), f"agents.{name}.retry", source)
            extras = _agent_extras(agent_doc, f"agents.{name}", source)
            extras.update(_over_time(agent_doc, f"agents.{name}", source))
        values = _fields(agent_doc, AGENT_FIELDS, f"agents.{name}", source,
                         ("retry", *_EXTRAS, *_OVER_TIME))
        values["retry"] = retry or settings.retry
        if "handler" in values and "command" in values:
            raise TeamError(f"{source}: agents.{name}: set either 'handler' or 'command', not both")
        other = next((k for k in ("handler", "command") if k in values), None)
        if other and "llm" in extras:
            raise TeamError(f"{source}: agents.{name}: set either 'llm' or '{other}', not both")
        values.update(extras)
        secret = values.get("secrets", ())
        both = next((k for k, _ in values.get("environment", ()) if k in secret), None)
        if both:
            raise TeamError(f"{source}: agents.{name}.secrets: {both} is in environment too; a "
                            f"secret is never written in the team file: drop it from environment")
        if "memory_trend" in values and values.get("memory_limit_mb") is None:
            raise TeamError(f"{source}: agents.{name}.memory_trend: needs memory_limit_mb "
                            f"(the limit the trend is projected to)")
        _approvals(values, f"agents.{name}", source)
        if values.get("on_stall") == "cancel" and values.get("stall_after") is None:
            raise TeamError(f"{source}: agents.{name}.on_stall: 'cancel' needs stall_after "
                            f"(seconds without output before the task is cancelled)")
        agents.append(AgentSpec(name=name, **values))
    _check_timing(settings, source)
    if any(a.workspace is not None and a.workspace.merge is not None for a in agents):
        from .llm import merge_problems
        for where, problem in merge_problems(agents):
            raise TeamError(f"{source}: {where}: {problem}")
    if settings.web_program and any(a.name == WEB_PROGRAM for a in agents):
        raise TeamError(f"{source}: agents.{WEB_PROGRAM}: this name is the web program's "
                        f"(the dashboard and XML-RPC over HTTP) while team.web or team.http "
                        f"is set; rename the agent")
    web, http = settings.web, settings.http
    if web is not None and http is not None and web.port == http.port:
        raise TeamError(f"{source}: team.web.port: {web.port} is team.http's port too; the "
                        f"dashboard and XML-RPC need a port each")
    hosts = _hosts(document["hosts"], source) if "hosts" in document else ()
    if check_schedules:
        _check_schedules(settings, agents, source)
    return Team(settings=settings, agents=tuple(agents), path=path or Path(source), hosts=hosts)


_OVER_TIME = ("schedule", "memory_trend")


def _over_time(agent_doc: dict, where: str, source: str) -> dict[str, Any]:
    """``schedule:`` and ``memory_trend:`` of an agent (popped from ``agent_doc``)."""
    from .schedule import MEMORY_TREND_FIELDS, SCHEDULE_FIELDS, MemoryTrend, ScheduleEntry
    found: dict[str, Any] = {}
    if "memory_trend" in agent_doc:
        trend = _fields(agent_doc.pop("memory_trend"), MEMORY_TREND_FIELDS,
                        f"{where}.memory_trend", source)
        if set(trend) != set(MEMORY_TREND_FIELDS):
            raise TeamError(f"{source}: {where}.memory_trend: needs window and restart_before "
                            f"(durations like 30m and 10m)")
        found["memory_trend"] = MemoryTrend(**trend)
    if "schedule" not in agent_doc:
        return found
    doc = agent_doc.pop("schedule")
    if not isinstance(doc, list):
        raise TeamError(f"{source}: {where}.schedule: expected a list of {{cron, type}} "
                        f"mappings, got {describe(doc)}")
    entries: list[ScheduleEntry] = []
    for i, item in enumerate(doc):
        values = _fields(item, SCHEDULE_FIELDS, f"{where}.schedule[{i}]", source)
        missing = {"cron", "type"} - set(values)
        if missing:
            raise TeamError(f"{source}: {where}.schedule[{i}]: missing "
                            f"{', '.join(sorted(missing))}")
        values.setdefault("name", values["type"])
        if any(e.name == values["name"] for e in entries):
            raise TeamError(f"{source}: {where}.schedule[{i}].name: a second entry named "
                            f"{values['name']!r}; give each entry its own name:")
        entries.append(ScheduleEntry(**values))
    found["schedule"] = tuple(entries)
    return found


def _check_schedules(settings: TeamSettings, agents: list[AgentSpec], source: str) -> None:
    """What the shape checks leave to cronsim and zoneinfo: the cron expressions' ranges and
    that each time zone exists (imported only for a team with schedules or a time zone)."""
    if settings.timezone is None and not any(a.schedule for a in agents):
        return
    from ..rules import cron
    checks = [("team.timezone", cron.zone, settings.timezone)]
    for agent in agents:
        for i, entry in enumerate(agent.schedule):
            where = f"agents.{agent.name}.schedule[{i}]"
            checks += [(f"{where}.cron", cron.check, entry.cron),
                       (f"{where}.timezone", cron.zone, entry.timezone)]
    for where, check, value in checks:
        if value is None:
            continue
        try:
            check(value)
        except ValueError as exc:
            raise TeamError(f"{source}: {where}: expected {exc}") from None


def _server(doc: Any, where: str, source: str, what: str = "the XML-RPC API") -> HttpSettings:
    """``team.http`` / ``team.web`` → HttpSettings: port, username and password_env required,
    loopback only unless allow_remote."""
    values = _fields(doc, HTTP_FIELDS, where, source)
    missing = {"port", "username", "password_env"} - set(values)
    if missing:
        raise TeamError(f"{source}: {where}: missing {', '.join(sorted(missing))}")
    server = HttpSettings(**values)
    check_http(server, source, where, what)
    return server


def _notify(doc: Any, source: str) -> tuple[NotifyTarget, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise TeamError(f"{source}: team.notify: expected a list of targets "
                        f"({{level, url}} or {{level, command}}), got {describe(doc)}")
    targets = []
    for i, item in enumerate(doc):
        where = f"team.notify[{i}]"
        values = _fields(item, NOTIFY_FIELDS, where, source)
        if ("url" in values) == ("command" in values):
            raise TeamError(f"{source}: {where}: set exactly one of 'url' or 'command'")
        target = NotifyTarget(**values)
        if any(t.key == target.key for t in targets):
            raise TeamError(f"{source}: {where}: the same destination twice")
        targets.append(target)
    return tuple(targets)


_NESTED = ("llm", "budget", "workspace", "approvals")
_EXTRAS = (*_NESTED, "rate_limit", "rate_limit_group")


def _nested(doc: Any, key: str, where: str, source: str) -> Any:
    """``llm:``, ``budget:`` or ``workspace:`` checked field by field, then as a whole."""
    from . import llm as spec
    schema, build = {"llm": (spec.LLM_FIELDS, spec.build_llm),
                     "budget": (spec.BUDGET_FIELDS, spec.build_budget),
                     "workspace": (spec.WORKSPACE_FIELDS, spec.build_workspace),
                     "approvals": (spec.APPROVALS_FIELDS, spec.build_approvals),
                     "merge": (spec.MERGE_FIELDS, spec.build_merge)}[key]
    values = _fields(doc, schema, where, source)
    if key == "workspace" and "merge" in values:
        values["merge"] = _nested(values["merge"], "merge", f"{where}.merge", source)
    try:
        return build(values)
    except spec.SpecError as exc:
        raise TeamError(f"{source}: {where}{'.' + exc.key if exc.key else ''}: {exc}") from None


def _agent_extras(agent_doc: dict, where: str, source: str) -> dict[str, Any]:
    """The LLM keys of an agent (popped from ``agent_doc``); budget, workspace, approvals,
    rate_limit and rate_limit_group only mean something for an llm agent."""
    extras = {key: _nested(agent_doc.pop(key), key, f"{where}.{key}", source)
              for key in _NESTED if key in agent_doc}
    flat = [key for key in _EXTRAS if key not in _NESTED and key in agent_doc]
    if flat:
        from .llm import AGENT_LLM_FIELDS
        extras.update(_fields({key: agent_doc.pop(key) for key in flat},
                              AGENT_LLM_FIELDS, where, source))
    orphan = next((k for k in _EXTRAS[1:] if k in extras), None)
    if orphan and "llm" not in extras:
        raise TeamError(f"{source}: {where}.{orphan}: only an llm agent has one (add llm:)")
    return extras


def _approvals(values: dict[str, Any], where: str, source: str) -> None:
    """An llm agent whose CLI hands the calls it would ask about to a person (team/llm.py's
    asks_a_person: auto_approve false, the claude preset) gets its approvals rules, the
    defaults unless it sets some; rules that nothing would apply are refused."""
    llm = values.get("llm")
    if llm is None:
        return
    from .llm import ApprovalsSpec, asks_a_person
    if asks_a_person(llm, values.get("auto_approve", False)):
        values.setdefault("approvals", ApprovalsSpec())
    elif "approvals" in values:
        why = ("auto_approve is true" if values.get("auto_approve") else
               f"preset {llm.preset} cannot ask a person (only claude can)"
               if llm.preset != "claude" else
               "the command skips Claude Code's permission prompts or names its own "
               "--permission-prompt-tool")
        raise TeamError(f"{source}: {where}.approvals: nothing would ask a person: {why}")


def _retry(doc: Any, where: str, source: str) -> RetryPolicy | None:
    """``retry:`` → RetryPolicy; an agent's replaces the team's as a whole."""
    if doc is None:
        return None
    if isinstance(doc, dict) and True in doc and "on" not in doc:
        # YAML 1.1 reads a bare ``on:`` key as the boolean true; here it can only mean ``on``.
        doc = {("on" if key is True else key): value for key, value in doc.items()}
    return RetryPolicy(**_fields(doc, RETRY_FIELDS, where, source))


def _check_timing(settings: TeamSettings, source: str) -> None:
    if settings.heartbeat_stale_after <= settings.heartbeat_interval:
        raise TeamError(f"{source}: team.heartbeat_stale_after: expected more than "
                        f"heartbeat_interval ({settings.heartbeat_interval:g}), "
                        f"got {settings.heartbeat_stale_after:g}")
    if settings.lease_seconds < MIN_LEASE_SECONDS:
        raise TeamError(f"{source}: team.lease_seconds: expected at least {MIN_LEASE_SECONDS:g} "
                        f"(a running task's lease is renewed every lease_seconds/3), "
                        f"got {settings.lease_seconds:g}")


# libyaml parses a large team file ~6× faster; every command and agent start loads it.
class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML that refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
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


def read_team_text(path: str | os.PathLike[str] = "data/team.yaml") -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TeamError(f"{path}: team file not found (create it, or pass --team PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TeamError(f"{path}: cannot read team file: {exc}") from None


def parse_team_text(text: str, path: str | os.PathLike[str], *,
                    check_schedules: bool = True) -> Team:
    """The team in ``text`` as if read from ``path`` (which fixes the project root)."""
    path = Path(path)
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except TeamError as exc:
        raise TeamError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or error_line(exc)
        raise TeamError(f"{path}: {where}invalid YAML: {problem}") from None
    team = parse_team(document, str(path), path, check_schedules=check_schedules)
    return database_override(team, os.environ)


DATABASE_ENV = "COFFEE_DATABASE_URL"


def database_override(team: Team, environ: Mapping[str, str]) -> Team:
    """``COFFEE_DATABASE_URL``, when set, replaces ``team.database_path`` (every process reads
    the team file through here: agents, the CLI, the control plane): on Kubernetes the URL
    with its password comes from a Secret, never from the ConfigMap's team file."""
    url = environ.get(DATABASE_ENV, "")
    if not url:
        return team
    try:
        checked = TEAM_FIELDS["database_path"](url)
    except Invalid as exc:
        # the value is not echoed: it carries the password
        what = str(exc).rsplit(", got ", 1)[0]
        raise TeamError(f"{DATABASE_ENV} (environment): expected {what}; fix the Secret "
                        f"or unset it to use team.database_path") from None
    from dataclasses import replace
    return replace(team, settings=replace(team.settings, database_path=checked))


def load_team(path: str | os.PathLike[str] = "data/team.yaml", *,
              check_schedules: bool = True) -> Team:
    return parse_team_text(read_team_text(path), path, check_schedules=check_schedules)
