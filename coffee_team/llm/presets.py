"""Reading what a coding CLI printed: its answer, cost, tokens, session id, and follow-ups.

Presets ship only for output formats confirmed from the CLI's own documentation:

- ``claude``: Claude Code's JSON lines, ``claude -p --output-format stream-json --verbose``
  (or the one result object of ``--output-format json``), read event by event (stream.py): the
  final ``result`` event gives ``result``, ``subtype``, ``is_error``, ``total_cost_usd``,
  ``usage.{input,output}_tokens`` and the cache token fields, ``session_id``, ``num_turns``.
  ``--max-budget-usd`` is its own spend cap (``budget_args``).
- ``codex``: ``codex exec --json`` JSON Lines events (stream.py): ``thread_id``, the last
  ``agent_message``, usage added up over ``turn.completed``, ``turn.failed``. No cost.
- ``json``: any CLI printing one JSON document, read through ``fields`` (dotted paths; ``*``
  matches every key of a mapping, and numbers found under it are added up).
- ``text``: stdout is the answer; no usage.

Pure: no processes, no files.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .reading import PREVIEW_CHARS, OutputError, Reading, Usage, preview  # noqa: F401 (API)
from .stream import ClaudeStream, CodexStream, session_id

# The queue stores results up to 1 MiB of ASCII JSON, and a non-ASCII character may take six
# bytes there (\uXXXX): an answer longer than this is cut, never a result the queue refuses.
MAX_ANSWER_CHARS = 100_000
FIELD_NAMES = ("result", "is_error", "cost", "tokens_in", "tokens_out", "cache_read",
               "cache_write", "session_id", "turns")
_FENCED = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)\n[ \t]*```", re.S | re.I)


@dataclass(frozen=True)
class Preset:
    name: str
    read: Callable[[str, dict[str, str]], Reading]
    session_args: tuple[str, ...] = ()
    # a CLI printing events as it works: a new reader per run (live steps, running usage)
    stream: Optional[Callable[[], Any]] = None
    # the CLI's own spend cap, given the USD left of the day's budget
    budget_args: tuple[str, ...] = ()


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
                   usage=usage, session_id=session_id(_first(document, fields.get("session_id"))),
                   is_error=bool(_first(document, fields.get("is_error"))),
                   turns=turns if isinstance(turns, int) and not isinstance(turns, bool) else None)


def read_text(stdout: str, fields: dict[str, str]) -> Reading:
    return Reading(text=stdout.strip())


def events(stdout: str) -> list[dict]:
    """The JSON objects among stdout's lines (other lines are warnings or noise)."""
    found = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def read_stream(make: Callable[[], Any], stdout: str) -> Reading:
    """All of stdout through a stream reader: its reading, or OutputError."""
    stream = make()
    for event in events(stdout):
        stream.feed(event)
    reading = stream.reading()
    if reading is None:
        raise OutputError(f"no result among the CLI's events: {preview(stdout)}")
    return reading


def read_claude(stdout: str, fields: dict[str, str]) -> Reading:
    """Claude Code's events; a result object over several lines is read as one document."""
    try:
        return read_stream(ClaudeStream, stdout)
    except OutputError:
        return read_json(stdout, CLAUDE_FIELDS)


CLAUDE_FIELDS = {"result": "result", "is_error": "is_error", "cost": "total_cost_usd",
                 "tokens_in": "usage.input_tokens", "tokens_out": "usage.output_tokens",
                 "cache_read": "usage.cache_read_input_tokens",
                 "cache_write": "usage.cache_creation_input_tokens",
                 "session_id": "session_id", "turns": "num_turns"}

PRESETS = {
    "claude": Preset("claude", read_claude, session_args=("--resume", "${session_id}"),
                     stream=ClaudeStream, budget_args=("--max-budget-usd", "${usd}")),
    "codex": Preset("codex", lambda out, _: read_stream(CodexStream, out),
                    session_args=("resume", "${session_id}"), stream=CodexStream),
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
    """The task's result: the answer, its data and follow-ups (``send``), turns and usage.
    The whole answer is parsed; the limits are on what is stored: the text is cut at
    MAX_ANSWER_CHARS and the data left out past it, while the ``send`` list goes on whole,
    for each follow-up to be checked on its own (agent/followups.py)."""
    text = reading.text
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS] + f"\n[… {len(text) - MAX_ANSWER_CHARS} more characters cut]"
    result: dict[str, Any] = {"text": text, "usage": reading.usage.as_dict()}
    data = structured(reading.text)
    if isinstance(data, dict):
        kept = {k: v for k, v in data.items() if k != "send"}
        if len(json.dumps(kept)) <= MAX_ANSWER_CHARS:
            result["data"] = kept  # larger: too large to store, the text (cut) is the answer
        if "send" in data:
            result["send"] = data["send"]
    if reading.session_id:
        result["session_id"] = reading.session_id
    if reading.turns is not None:
        result["turns"] = reading.turns
    return result
