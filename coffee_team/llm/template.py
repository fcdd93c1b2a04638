"""Prompt templates: ``${type}``, ``${content}``, ``${content.spec_id}``, ``${id}``, ``${agent}``.

Substituted, never evaluated: a placeholder names a field, its value is pasted in as text, and
nothing in a task's content is ever read as a placeholder, an expression, a shell word or an
option (the runner passes the prompt on stdin, or as one argv element). ``$$`` is a literal
``$``; any other ``$`` is plain text, so prompts about shell code need no escaping.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

# ${name} or ${name.path.to.field}: the path parts are dict keys or list indices.
_PLACEHOLDER = re.compile(r"\$\$|\$\{([^{}]*)\}|\$\{")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*$")

TASK_FIELDS = ("type", "content", "id", "agent", "sender", "priority", "attempt")
SESSION_FIELDS = ("session_id", "agent")
MAX_KEY_CHARS = 200  # a longer session key is stored as its SHA-256


class TemplateError(ValueError):
    """A template that cannot be used (at load time) or rendered (for one task)."""


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholder paths, alternating."""
    parts: tuple[str | tuple[str, ...], ...]

    @property
    def fields(self) -> tuple[tuple[str, ...], ...]:
        return tuple(p for p in self.parts if isinstance(p, tuple))

    def render(self, values: dict[str, Any]) -> str:
        out = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else as_text(lookup(values, part)))
        return "".join(out)


def parse(text: str, allowed: tuple[str, ...] = TASK_FIELDS) -> Template:
    """Split a template; an unknown field or a malformed ``${`` is a TemplateError."""
    parts: list[str | tuple[str, ...]] = []
    literal, position = [], 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[position:match.start()])
        position = match.end()
        token = match.group(0)
        if token == "$$":
            literal.append("$")
            continue
        name = match.group(1)
        if name is None or not _NAME.fullmatch(name.strip()):
            shown = token if name is None else f"${{{name}}}"
            raise TemplateError(f"malformed placeholder {shown!r} (write ${{field}}, "
                                f"or $$ for a literal $)")
        path = tuple(name.strip().split("."))
        if path[0] not in allowed:
            raise TemplateError(f"unknown field ${{{name}}} (allowed: "
                                f"{', '.join('${' + f + '}' for f in allowed)})")
        if len(path) > 1 and path[0] != "content":
            raise TemplateError(f"${{{name}}}: only ${{content}} has fields")
        parts += ["".join(literal), path]
        literal = []
    literal.append(text[position:])
    parts.append("".join(literal))
    return Template(tuple(p for p in parts if p != ""))


def lookup(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path``; a missing one is a TemplateError naming it."""
    value = values[path[0]]
    for depth, key in enumerate(path[1:], start=1):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            where = ".".join(path[:depth])
            raise TemplateError(f"${{{'.'.join(path)}}}: the task's {where} has no field "
                                f"{key!r}")
    return value


def as_text(value: Any) -> str:
    """Strings as they are; anything else as JSON (readable, non-ASCII kept)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def task_values(task: dict, agent: str) -> dict[str, Any]:
    """What a prompt template may name, from a task dict (execution.task_dict)."""
    return {"type": task.get("type"), "content": task.get("content"), "id": task.get("id"),
            "agent": agent, "sender": task.get("sender"), "priority": task.get("priority"),
            "attempt": task.get("attempts")}


def session_key(key: Optional[Template], task: dict, agent: str) -> Optional[str]:
    """Which kept session a task resumes (``session_key`` rendered): '' for every task when
    there is no key template; None (start fresh, keep nothing) for a task the key does not
    fit (a field it names is missing, or it renders empty): such a task is unrelated."""
    if key is None:
        return ""
    try:
        text = key.render(task_values(task, agent))
    except TemplateError:
        return None
    if len(text) > MAX_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text or None
