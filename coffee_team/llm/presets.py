"""Reading what a coding CLI printed: its answer, cost, tokens, session id, and follow-ups.

Presets ship only for output formats confirmed from the CLI's own documentation:

- ``claude``: ``claude -p --output-format json`` prints one JSON object: ``result``,
  ``is_error``, ``total_cost_usd``, ``usage.{input,output}_tokens`` and the cache token fields,
  ``session_id``, ``num_turns``.
- ``codex``: ``codex exec --json`` prints JSON Lines events (openai/codex docs/exec.md):
  ``thread.started`` (``thread_id``), ``item.completed`` with an ``agent_message`` item (the
  answer), ``turn.completed`` with ``usage.{input,cached_input,output}_tokens``, ``turn.failed``
  (``error.message``). It reports no cost.
- ``json``: any CLI printing one JSON document, read through ``fields`` (dotted paths; ``*``
  matches every key of a mapping, and numbers found under it are added up).
- ``text``: stdout is the answer; no usage.

Pure: no processes, no files.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

PREVIEW_CHARS = 500
# The queue stores results up to 1 MiB of ASCII JSON, and a non-ASCII character may take six
# bytes there (\uXXXX): an answer longer than this is cut, never a result the queue refuses.
MAX_ANSWER_CHARS = 100_000
FIELD_NAMES = ("result", "is_error", "cost", "tokens_in", "tokens_out", "cache_read",
               "cache_write", "session_id", "turns")
_FENCED = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)\n[ \t]*```", re.S | re.I)
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


class OutputError(ValueError):
    """The CLI's output is not what its preset reads; ``str()`` shows the start of it."""


@dataclass(frozen=True)
class Usage:
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def tokens(self) -> int:
        """What ``tokens_per_day`` counts: input and output (cache tokens are in the cost)."""
        return self.tokens_in + self.tokens_out

    def as_dict(self) -> dict[str, Any]:
        return {"cost_usd": self.cost_usd, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cache_read": self.cache_read,
                "cache_write": self.cache_write}


@dataclass(frozen=True)
class Reading:
    """One run of the CLI, read: the answer text and what it cost."""
    text: str
    usage: Usage = field(default_factory=Usage)
    session_id: str | None = None
    is_error: bool = False
    turns: int | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    read: Callable[[str, dict[str, str]], Reading]
    session_args: tuple[str, ...] = ()


def preview(text: str) -> str:
    """The first PREVIEW_CHARS characters of what was printed, for an error message."""
    text = text.strip()
    return repr(text[:PREVIEW_CHARS]) + ("…" if len(text) > PREVIEW_CHARS else "")


# --- field paths -------------------------------------------------------------------------

def check_path(path: str) -> str:
    """A dotted path of keys (``*`` for every key); raises ValueError if malformed."""
    if not isinstance(path, str) or not re.fullmatch(r"[\w-]+|\*", path.split(".")[0]) \
            or not all(re.fullmatch(r"[\w-]+|\*", p) for p in path.split(".")):
        raise ValueError(f"a dotted path such as usage.input_tokens, got {path!r}")
    return path


def pick(document: Any, path: str) -> list[Any]:
    """Every value at ``path`` (several through ``*``, none when a key is missing)."""
    found = [document]
    for key in path.split("."):
        step = []
        for value in found:
            if isinstance(value, dict):
                step += list(value.values()) if key == "*" else ([value[key]] if key in value else [])
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                step.append(value[int(key)])
        found = step
    return found


def _number(document: Any, path: str | None) -> float:
    if not path:
        return 0.0
    values = [v for v in pick(document, path)
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(sum(values))


def _first(document: Any, path: str | None) -> Any:
    values = pick(document, path) if path else []
    return values[0] if values else None


def _session(value: Any) -> str | None:
    """A session id as the CLI gave it, if it is safe to pass back as one argument."""
    return value if isinstance(value, str) and _SESSION_ID.fullmatch(value) else None


# --- the formats -------------------------------------------------------------------------

def _json_document(stdout: str) -> Any:
    """The whole stdout as JSON, else its last line that is a JSON object (warnings first)."""
    try:
        return json.loads(stdout)
    except ValueError:
        pass
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise OutputError(f"expected a JSON result, got {preview(stdout)}")


def read_json(stdout: str, fields: dict[str, str]) -> Reading:
    document = _json_document(stdout)
    result = _first(document, fields.get("result"))
    if result is None:
        raise OutputError(f"no {fields.get('result')!r} in the JSON result: {preview(stdout)}")
    usage = Usage(cost_usd=_number(document, fields.get("cost")),
                  tokens_in=int(_number(document, fields.get("tokens_in"))),
                  tokens_out=int(_number(document, fields.get("tokens_out"))),
                  cache_read=int(_number(document, fields.get("cache_read"))),
                  cache_write=int(_number(document, fields.get("cache_write"))))
    turns = _first(document, fields.get("turns"))
    return Reading(text=result if isinstance(result, str) else json.dumps(result),
                   usage=usage, session_id=_session(_first(document, fields.get("session_id"))),
                   is_error=bool(_first(document, fields.get("is_error"))),
                   turns=turns if isinstance(turns, int) and not isinstance(turns, bool) else None)


def read_text(stdout: str, fields: dict[str, str]) -> Reading:
    return Reading(text=stdout.strip())


def read_codex(stdout: str, fields: dict[str, str]) -> Reading:
    """``codex exec --json`` events: the last agent message, usage added up over turns."""
    text, session, error = None, None, None
    tokens = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0}
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "thread.started":
            session = _session(event.get("thread_id"))
        elif kind == "item.completed" and (event.get("item") or {}).get("type") == "agent_message":
            text = str(event["item"].get("text", ""))
        elif kind == "turn.completed":
            for key in tokens:
                tokens[key] += int(_number(event, f"usage.{key}"))
        elif kind in ("turn.failed", "error"):
            error = str(_first(event, "error.message") or event.get("message") or kind)
    if text is None and error is None:
        raise OutputError(f"no agent message in the codex events: {preview(stdout)}")
    usage = Usage(tokens_in=tokens["input_tokens"], tokens_out=tokens["output_tokens"],
                  cache_read=tokens["cached_input_tokens"])
    return Reading(text=error if error is not None else text, usage=usage, session_id=session,
                   is_error=error is not None)


CLAUDE_FIELDS = {"result": "result", "is_error": "is_error", "cost": "total_cost_usd",
                 "tokens_in": "usage.input_tokens", "tokens_out": "usage.output_tokens",
                 "cache_read": "usage.cache_read_input_tokens",
                 "cache_write": "usage.cache_creation_input_tokens",
                 "session_id": "session_id", "turns": "num_turns"}

PRESETS = {
    "claude": Preset("claude", lambda out, _: read_json(out, CLAUDE_FIELDS),
                     session_args=("--resume", "${session_id}")),
    "codex": Preset("codex", read_codex, session_args=("resume", "${session_id}")),
    "json": Preset("json", read_json),
    "text": Preset("text", read_text),
}


# --- follow-ups ----------------------------------------------------------------------------

def structured(text: str) -> Any:
    """The answer as data: the whole text if it is JSON, else the last fenced JSON block
    that parses (```json ... ```), else None."""
    candidates = [text.strip()] + [m.group(1) for m in reversed(list(_FENCED.finditer(text)))]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def result_of(reading: Reading) -> dict[str, Any]:
    """The task's result: the answer, its data and follow-ups (``send``), turns and usage."""
    text = reading.text
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS] + f"\n[… {len(text) - MAX_ANSWER_CHARS} more characters cut]"
    result: dict[str, Any] = {"text": text, "usage": reading.usage.as_dict()}
    data = structured(reading.text)
    if data is not None and len(json.dumps(data)) > MAX_ANSWER_CHARS:
        data = None  # too large to store: the text (cut) is the answer
    if isinstance(data, dict):
        result["data"] = {k: v for k, v in data.items() if k != "send"}
        if "send" in data:
            result["send"] = data["send"]
    if reading.session_id:
        result["session_id"] = reading.session_id
    if reading.turns is not None:
        result["turns"] = reading.turns
    return result
