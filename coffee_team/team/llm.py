"""The team file's ``llm:``, ``budget:`` and ``workspace:`` keys: checkers and dataclasses.

Pure. Field checkers raise ``fields.Invalid`` (``parse`` adds the file and key path); whole-
mapping rules raise ``SpecError`` naming the sub-key they are about, so every message is one
line naming the key path, at load time (``gen-config``/``start``), never at the first task.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .fields import AGENT_NAME, Invalid, describe
from .fields import boolean, choice, integer, positive_number  # the team file's checkers
from ..clock import parse_duration
from ..llm import permissions, presets, template
from ..llm.budget import Budget, Prices

DEFAULT_PROMPT = "Task ${type} (#${id}) for ${agent}:\n${content}"
DEFAULT_BRANCH = "agents/${agent}"
DEFAULT_WORKTREE_PATH = "data/worktrees/${agent}"
DEFAULT_CHECK_TIMEOUT = 1800.0  # seconds a merge check may take before it counts as failed
# git check-ref-format, roughly: no spaces, control characters, '..', '~^:?*[\', no leading '-'.
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f]+(?<![./])$")


class SpecError(ValueError):
    """A rule over a whole mapping; ``key`` is the sub-key it names ('' for the mapping)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class LlmSpec:
    command: tuple[str, ...]
    preset: str = "claude"
    fields: tuple[tuple[str, str], ...] = ()      # preset json: field name → dotted path
    prompt: str = DEFAULT_PROMPT
    system_prompt_file: Optional[str] = None
    prompt_via: str = "stdin"                     # or "arg": the last argument
    session: str = "none"                         # or "keep": resume the previous session
    session_args: Optional[tuple[str, ...]] = None  # None: the preset's
    session_key: Optional[str] = None              # template: one session per rendered key
    periodic_prompt: Optional[str] = None          # None: periodic runs call no model
    prices: Optional[Prices] = None                # USD per million tokens, for estimates

    @property
    def resume_args(self) -> tuple[str, ...]:
        if self.session_args is not None:
            return self.session_args
        return presets.PRESETS[self.preset].session_args


PERSON = "person"  # review_by: a person decides (an approval), not an agent


@dataclass(frozen=True)
class MergeSpec:
    """``workspace.merge``: the agent's commits are reviewed, then merged into ``into``."""
    into: str                                     # the target branch, e.g. roadmap
    review_by: str                                # an agent of the team, or "person"
    checks: tuple[tuple[str, ...], ...] = ()      # argvs run on the merge result, in order
    check_timeout: float = DEFAULT_CHECK_TIMEOUT  # seconds, per check

    @property
    def reviewer(self) -> Optional[str]:
        """The reviewing agent (None: a person)."""
        return None if self.review_by == PERSON else self.review_by


@dataclass(frozen=True)
class WorkspaceSpec:
    dir: Optional[str] = None                     # run the CLI there (relative to the root)
    worktree: bool = False                        # or: a git worktree of its own
    branch: str = DEFAULT_BRANCH                  # ${agent} substituted
    path: str = DEFAULT_WORKTREE_PATH             # where the worktree lives
    base: Optional[str] = None                    # the new branch's start (default: HEAD,
    merge: Optional[MergeSpec] = None             # or merge.into when merging)

    def branch_for(self, agent: str) -> str:
        return template.parse(self.branch, ("agent",)).render({"agent": agent})

    def path_for(self, agent: str) -> str:
        return template.parse(self.path, ("agent",)).render({"agent": agent})


@dataclass(frozen=True)
class ApprovalsSpec:
    """Which of the agent's tool calls wait for a person (llm/permissions.py decides), how
    long a person has, and what no answer means."""
    ask: tuple[str, ...] = ()                     # Claude Code rules: these always ask
    allow: tuple[str, ...] = ()                   # ... these run (unless an ask rule matches)
    timeout: float = 3600.0                       # seconds a call waits for a person
    on_timeout: str = "deny"                      # or "allow"

    @property
    def ask_rules(self) -> tuple[permissions.Rule, ...]:
        return tuple(permissions.parse_rule(r) for r in self.ask)

    @property
    def allow_rules(self) -> tuple[permissions.Rule, ...]:
        return tuple(permissions.parse_rule(r) for r in self.allow)


# Options with which Claude Code never asks: nothing would reach a person.
SKIPS_PERMISSIONS = ("--dangerously-skip-permissions", "bypassPermissions",
                     "--permission-mode=bypassPermissions")
PROMPT_TOOL_OPTION = "--permission-prompt-tool"


def asks_a_person(llm: LlmSpec, auto_approve: bool) -> bool:
    """Does this agent's CLI hand the calls it would ask about to a person? Claude Code does
    (``--permission-prompt-tool``) unless the agent auto-approves, the command skips its
    permission checks or names a prompt tool of its own."""
    command = llm.command
    return (llm.preset == "claude" and not auto_approve
            and not any(a in SKIPS_PERMISSIONS for a in command)
            and not any(a == PROMPT_TOOL_OPTION or a.startswith(PROMPT_TOOL_OPTION + "=")
                        for a in command))


def _text(what: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not v.strip() or "\x00" in v:
            raise Invalid(f"{what}, got {describe(v)}")
        return v
    return check


def _strings(what: str) -> Callable[[Any], tuple[str, ...]]:
    def check(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(a, str) and a and "\x00" not in a
                                              for a in v):
            raise Invalid(f"{what}, got {describe(v)}")
        return tuple(v)
    return check


def _command(v: Any) -> tuple[str, ...]:
    command = _strings("a non-empty list of arguments, e.g. [claude, -p, --output-format, json]")(v)
    if not command:
        raise Invalid("a non-empty list of arguments, e.g. [claude, -p, --output-format, json]")
    return command


def _field_paths(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        raise Invalid(f"a mapping of {', '.join(presets.FIELD_NAMES)} to dotted paths, "
                      f"got {describe(v)}")
    for key, path in v.items():
        if key not in presets.FIELD_NAMES:
            raise Invalid(f"field names among {', '.join(presets.FIELD_NAMES)}, got {describe(key)}")
        try:
            presets.check_path(path)
        except ValueError as exc:
            raise Invalid(f"{exc} for {key}") from None
    return tuple(sorted(v.items()))


def _prices(v: Any) -> Prices:
    what = "a mapping of input, output, cache_read, cache_write to USD per million tokens"
    if not isinstance(v, dict) or not v:
        raise Invalid(f"{what}, got {describe(v)}")
    for key, price in v.items():
        if key not in Prices.__dataclass_fields__:
            raise Invalid(f"{what}, got {describe(key)}")
        if isinstance(price, bool) or not isinstance(price, (int, float)) \
                or not math.isfinite(price) or not 0 <= price <= 10**6:
            raise Invalid(f"a price from 0 to 1e6 USD per million tokens for {key}, "
                          f"got {describe(price)}")
    return Prices(**{k: float(p) for k, p in v.items()})


def regex_field(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise Invalid(f"a regular expression, got {describe(v)}")
    try:
        re.compile(v)
    except re.error as exc:
        raise Invalid(f"a valid regular expression, got {describe(v)} ({exc})") from None
    return v


def group_field(v: Any) -> str:
    if not isinstance(v, str) or not _GROUP.fullmatch(v):
        raise Invalid(f"a group name of letters, digits, '_', '.' and '-', got {describe(v)}")
    return v


# An llm agent's own keys beside llm: (not nested under it).
AGENT_LLM_FIELDS: dict[str, Callable[[Any], Any]] = {
    "rate_limit": regex_field,
    "rate_limit_group": group_field,
}

LLM_FIELDS: dict[str, Callable[[Any], Any]] = {
    "command": _command,
    "preset": choice(*presets.PRESETS),
    "fields": _field_paths,
    "prompt": _text("a prompt template"),
    "system_prompt_file": _text("a path to a text file"),
    "prompt_via": choice("stdin", "arg"),
    "session": choice("keep", "none"),
    "session_args": _strings("a list of arguments, e.g. [--resume, '${session_id}']"),
    "session_key": _text("a key template such as '${content.spec_id}'"),
    "periodic_prompt": _text("a prompt template"),
    "prices": _prices,
}

BUDGET_FIELDS: dict[str, Callable[[Any], Any]] = {
    "usd_per_day": positive_number(10**6),
    "tokens_per_day": integer(1, 10**12),
}

WORKSPACE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "dir": _text("a directory"),
    "worktree": boolean,
    "branch": _text("a branch name template such as agents/${agent}"),
    "path": _text("a directory template such as data/worktrees/${agent}"),
    "base": _text("a git revision"),
    "merge": lambda v: v,  # a mapping of its own: parse checks it with MERGE_FIELDS
}


def _checks(v: Any) -> tuple[tuple[str, ...], ...]:
    what = "a list of commands, each a non-empty list of arguments, e.g. [[pytest, -q]]"
    if not isinstance(v, list) or not all(isinstance(argv, list) and argv for argv in v):
        raise Invalid(f"{what}, got {describe(v)}")
    return tuple(_strings(what)(argv) for argv in v)


def branch_name(v: Any) -> str:
    if not isinstance(v, str) or not _BRANCH.fullmatch(v):
        raise Invalid(f"a git branch name such as roadmap, got {describe(v)}")
    return v


def _reviewer(v: Any) -> str:
    if not isinstance(v, str) or not (v == PERSON or AGENT_NAME.fullmatch(v)):
        raise Invalid(f"an agent of the team or {PERSON}, got {describe(v)}")
    return v


MERGE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "into": branch_name,
    "review_by": _reviewer,
    "checks": _checks,
    "check_timeout": positive_number(7 * 86400),
}


def _rules(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise Invalid(f"a list of rules such as [\"Bash(git push:*)\", Write], got {describe(v)}")
    for rule in v:
        try:
            permissions.parse_rule(rule)
        except permissions.RuleError as exc:
            raise Invalid(str(exc)) from None
    return tuple(v)


def _duration(v: Any) -> float:
    """Seconds: a number, or a text such as 30m, 1h, 1d (clock.parse_duration)."""
    try:
        seconds = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
            else parse_duration(v) if isinstance(v, str) else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 < seconds <= 30 * 86400:
        raise Invalid(f"a duration from 1s to 30d such as 1h or 30m, got {describe(v)}")
    return seconds


APPROVALS_FIELDS: dict[str, Callable[[Any], Any]] = {
    "ask": _rules,
    "allow": _rules,
    "timeout": _duration,
    "on_timeout": choice("deny", "allow"),
}


def build_approvals(values: dict[str, Any]) -> ApprovalsSpec:
    return ApprovalsSpec(**values)


def _template(text: str, key: str, allowed: tuple[str, ...]) -> None:
    try:
        template.parse(text, allowed)
    except template.TemplateError as exc:
        raise SpecError(key, str(exc)) from None


def build_llm(values: dict[str, Any]) -> LlmSpec:
    if "command" not in values:
        raise SpecError("command", "required: the CLI to run, e.g. [claude, -p, "
                                   "--output-format, json]")
    for key in ("prompt", "periodic_prompt", "session_key"):
        if key in values:
            _template(values[key], key, template.TASK_FIELDS)
    if "session_key" in values and values.get("session") != "keep":
        raise SpecError("session_key", "only with session: keep (the key picks which kept "
                                       "session a task resumes)")
    for i, arg in enumerate(values.get("session_args", ())):
        _template(arg, f"session_args[{i}]", template.SESSION_FIELDS)
    if values.get("preset") == "json" and "result" not in dict(values.get("fields", ())):
        raise SpecError("fields", "preset json needs at least fields.result (the dotted path "
                                  "of the answer)")
    if "fields" in values and values.get("preset") != "json":
        raise SpecError("fields", "only preset json reads field paths")
    command = values["command"]
    streams = any(a == "stream-json" or a.endswith("=stream-json") for a in command)
    if values.get("preset", "claude") == "claude" and streams and "--verbose" not in command:
        raise SpecError("command", "--output-format stream-json needs --verbose (Claude Code "
                                   "refuses it without in print mode)")
    return LlmSpec(**values)


def build_budget(values: dict[str, Any]) -> Budget:
    if not values:
        raise SpecError("", "set usd_per_day and/or tokens_per_day")
    return Budget(**values)


def build_merge(values: dict[str, Any]) -> MergeSpec:
    missing = [key for key in ("into", "review_by") if key not in values]
    if missing:
        raise SpecError(missing[0], "required: merge needs into (the target branch) and "
                                    "review_by (an agent of the team, or person)")
    return MergeSpec(**values)


def build_workspace(values: dict[str, Any]) -> WorkspaceSpec:
    spec = WorkspaceSpec(**values)
    if (spec.dir is None) == (not spec.worktree):
        raise SpecError("", "set either dir: PATH or worktree: true")
    if not spec.worktree and any(k in values for k in ("branch", "path", "base", "merge")):
        raise SpecError("", "branch, path, base and merge are for worktree: true")
    for key in ("branch", "path"):
        _template(getattr(spec, key), key, ("agent",))
    if spec.worktree and not _BRANCH.fullmatch(spec.branch_for("a")):
        raise SpecError("branch", f"not a usable git branch name: {spec.branch!r}")
    return spec


def merge_problems(agents: Any) -> list[tuple[str, str]]:
    """(key path, problem) of every ``workspace.merge`` the rest of the team contradicts: a
    reviewer that is no agent of the team, or the author itself; a target that is the
    agent's own branch."""
    names = {a.name for a in agents}
    found = []
    for agent in agents:
        merge = agent.workspace.merge if agent.workspace is not None else None
        if merge is None:
            continue
        where = f"agents.{agent.name}.workspace.merge"
        if merge.reviewer is not None and merge.reviewer not in names:
            found.append((f"{where}.review_by", f"{merge.reviewer!r} is no agent of the team "
                                                f"(known: {', '.join(sorted(names))}; or "
                                                f"{PERSON})"))
        elif merge.reviewer == agent.name:
            found.append((f"{where}.review_by", "an agent cannot review its own commits"))
        if merge.into == agent.workspace.branch_for(agent.name):
            found.append((f"{where}.into", f"{merge.into!r} is the agent's own branch"))
    return found
