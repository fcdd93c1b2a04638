"""The coding CLIs' event streams, one JSON line at a time: what each event shows (a log line
and the agent's current step) and what the run has used so far. Pure: no processes, no I/O.

The formats, from the CLIs' own documentation:

- Claude Code, ``claude -p --output-format stream-json --verbose`` (JSON lines): a ``system``
  event (subtype ``init``: ``session_id``, ``cwd``, ``model``); ``assistant`` events whose
  ``message.content`` holds ``text``, ``thinking`` and ``tool_use`` blocks (``name``,
  ``input``) and whose ``message.usage`` is that API message's usage (the events of one
  message share its ``id`` and usage: counted once, at the highest figures, as the Agent SDK's
  cost-tracking guide says); ``user`` events with ``tool_result`` blocks (``is_error``); a final
  ``result`` event: ``subtype`` (``success``, ``error_max_turns``, ``error_max_budget_usd``,
  ``error_during_execution``…), ``is_error``, ``result``, ``total_cost_usd``, ``usage``,
  ``session_id``, ``num_turns``. ``--output-format json`` prints that result object alone.
- Codex, ``codex exec --json`` (openai/codex docs/exec.md): ``thread.started``
  (``thread_id``), ``turn.started``, ``item.started``/``item.updated``/``item.completed`` with
  an ``item`` (``agent_message``, ``reasoning``, ``command_execution`` {command, exit_code,
  status}, ``file_change`` {changes: [{path, kind}]}, ``mcp_tool_call`` {server, tool},
  ``web_search`` {query}, ``todo_list`` {items}, ``error``), ``turn.completed`` (``usage``:
  ``input_tokens``, ``cached_input_tokens``, ``output_tokens``), ``turn.failed`` (``error``),
  ``error``. Codex states tokens per completed turn and never a cost.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from ..output import one_line
from .reading import Reading, Usage

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
# the input keys that say what a tool call is about: a path, else one telling argument
_PATH_KEYS = ("file_path", "notebook_path", "path")
_ARG_KEYS = ("command", "pattern", "url", "query", "description", "prompt", "skill")
_CHANGE_KINDS = {"add": "Add", "delete": "Delete", "update": "Edit"}


@dataclass(frozen=True)
class Step:
    """What one event shows: ``line`` for the log, ``progress`` for the heartbeat (None leaves
    the current step as it was)."""
    line: str
    progress: Optional[str] = None


# --- text -------------------------------------------------------------------------------------

def _lines_after_first(text: str) -> int:
    return max(0, sum(1 for line in text.splitlines() if line.strip()) - 1)


def said(text: Any) -> Optional[Step]:
    """An assistant's text: its first line (and how many more) in the log; the step too."""
    first = one_line(text)
    if not first:
        return None
    more = _lines_after_first(text)
    return Step(f"says: {first}" + (f" (+{more} lines)" if more else ""), first)


def relative(path: str, cwd: Optional[str]) -> str:
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1:]
    return path


def tool_step(name: Any, tool_input: Any, cwd: Optional[str] = None) -> str:
    """'Edit src/cli.py', 'Bash: pytest -q', 'Grep: TODO': a tool call and what it is about
    (its path, relative to the run's directory, else the first telling argument)."""
    name = one_line(name, 40) or "tool"
    args = tool_input if isinstance(tool_input, dict) else {}
    for key in _PATH_KEYS:
        path = one_line(args.get(key))
        if path:
            return one_line(f"{name} {relative(path, cwd)}")
    for key in _ARG_KEYS:
        value = one_line(args.get(key))
        if value:
            return one_line(f"{name}: {value}")
    return name


def _block_text(content: Any) -> str:
    """A tool result's content: a string, or a list of blocks with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content
                         if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _outcome(failed: bool, detail: Any = None) -> Step:
    why = one_line(detail)
    return Step(f"  -> error: {why}" if failed and why else "  -> error" if failed else "  -> ok")


def _number(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value >= 0 else 0


def session_id(value: Any) -> Optional[str]:
    """A session id as the CLI gave it, if it is safe to pass back as one argument."""
    return value if isinstance(value, str) and _SESSION_ID.fullmatch(value) else None


# --- Claude Code --------------------------------------------------------------------------------

def claude_usage(usage: Any, cost: Any = 0.0) -> Usage:
    u = usage if isinstance(usage, dict) else {}
    dollars = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) \
        and cost >= 0 else 0.0
    return Usage(dollars, _number(u.get("input_tokens")), _number(u.get("output_tokens")),
                 _number(u.get("cache_read_input_tokens")),
                 _number(u.get("cache_creation_input_tokens")))


def claude_steps(event: dict, cwd: Optional[str] = None) -> list[Step]:
    kind = event.get("type")
    if kind == "system":
        if event.get("subtype") == "init":
            model = one_line(event.get("model"), 60)
            return [Step(f"session {one_line(event.get('session_id'), 80)} started"
                         + (f" ({model})" if model else ""), "starting")]
        return [Step(f"system: {one_line(event.get('subtype'), 60) or 'event'}")]
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    content = message.get("content") if isinstance(message.get("content"), list) else []
    blocks = [b for b in content if isinstance(b, dict)]
    if kind == "assistant":
        steps = []
        for block in blocks:
            if block.get("type") == "text":
                steps += [s for s in (said(block.get("text")),) if s]
            elif block.get("type") == "tool_use":
                step = tool_step(block.get("name"), block.get("input"), cwd)
                steps.append(Step(step, step))
            elif block.get("type") in ("thinking", "redacted_thinking"):
                steps.append(Step("thinking", "thinking"))
        if event.get("error"):
            steps.append(Step(f"error: {one_line(str(event['error']))}"))
        return steps
    if kind == "user":
        return [_outcome(bool(b.get("is_error")), _block_text(b.get("content")))
                for b in blocks if b.get("type") == "tool_result"]
    if kind == "result":
        usage = claude_usage(event.get("usage"), event.get("total_cost_usd"))
        subtype = one_line(event.get("subtype"), 60) or "result"
        return [Step(f"{'done' if subtype == 'success' else 'stopped'}: {subtype}, "
                     f"{_number(event.get('num_turns'))} turns, ${usage.cost_usd:.4f}, "
                     f"{usage.tokens:,} tokens")]
    return []  # e.g. stream_event (partial messages): output all the same, nothing to show


class ClaudeStream:
    """A Claude Code run as its events come: its steps, its running usage, its result."""

    def __init__(self) -> None:
        self.cwd: Optional[str] = None
        self.messages: dict[str, Usage] = {}  # API message id → its usage (highest seen)
        self.result: Optional[dict] = None

    def feed(self, event: dict) -> list[Step]:
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init" and isinstance(event.get("cwd"),
                                                                               str):
            self.cwd = event["cwd"]
        elif kind == "assistant" and isinstance(event.get("message"), dict):
            message = event["message"]
            key = message.get("id") if isinstance(message.get("id"), str) \
                else f"#{len(self.messages)}"
            seen, now = self.messages.get(key, Usage()), claude_usage(message.get("usage"))
            self.messages[key] = Usage(0.0, *(max(a, b) for a, b in zip(
                (seen.tokens_in, seen.tokens_out, seen.cache_read, seen.cache_write),
                (now.tokens_in, now.tokens_out, now.cache_read, now.cache_write))))
        elif kind == "result":
            self.result = event
        return claude_steps(event, self.cwd)

    @property
    def usage(self) -> Usage:
        """The result's totals once it came, else the messages' usage added up (no cost)."""
        if self.result is not None:
            return claude_usage(self.result.get("usage"), self.result.get("total_cost_usd"))
        return sum(self.messages.values(), Usage())

    @property
    def cost_reported(self) -> bool:
        cost = (self.result or {}).get("total_cost_usd")
        return isinstance(cost, (int, float)) and not isinstance(cost, bool)

    @property
    def complete(self) -> bool:
        return self.result is not None

    def reading(self) -> Optional[Reading]:
        """The run's answer from its result event; None before it came."""
        event = self.result
        if event is None:
            return None
        subtype = event.get("subtype") if isinstance(event.get("subtype"), str) else None
        text = event.get("result")
        if not isinstance(text, str):
            errors = event.get("errors")
            text = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors \
                else (subtype or "")
        turns = event.get("num_turns")
        return Reading(text=text, usage=self.usage, session_id=session_id(event.get("session_id")),
                       is_error=bool(event.get("is_error")) or subtype not in (None, "success"),
                       turns=turns if isinstance(turns, int) and not isinstance(turns, bool)
                       else None, subtype=subtype)


# --- Codex --------------------------------------------------------------------------------------

def codex_item_steps(kind: str, item: dict) -> list[Step]:
    itype, done = item.get("type"), kind == "item.completed"
    if itype == "agent_message":
        return [s for s in (said(item.get("text")),) if s] if done else []
    if itype == "reasoning":
        thought = one_line(item.get("text"))
        return [Step(f"thinking: {thought}", thought or "thinking")] if done else []
    if itype == "command_execution":
        if not done:
            step = one_line(f"Run: {one_line(item.get('command'))}")
            return [Step(step, step)]
        code, status = item.get("exit_code"), item.get("status")
        return [Step(f"  -> exit {code}" if isinstance(code, int) else f"  -> {status}")]
    if itype == "file_change":
        changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
        step = one_line(", ".join(f"{_CHANGE_KINDS.get(c.get('kind'), 'Change')} "
                                  f"{one_line(c.get('path'))}" for c in changes) or "file change")
        failed = " (failed)" if item.get("status") == "failed" else ""
        return [Step(step + failed, step)] if done else []
    if itype == "mcp_tool_call":
        if not done:
            step = one_line(f"MCP {one_line(item.get('server'), 40)}.{one_line(item.get('tool'), 60)}")
            return [Step(step, step)]
        error = item.get("error") if isinstance(item.get("error"), dict) else None
        return [_outcome(error is not None or item.get("status") == "failed",
                         (error or {}).get("message"))]
    if itype == "web_search":
        step = one_line(f"WebSearch: {one_line(item.get('query'))}")
        return [Step(step, step)] if not done else []
    if itype == "todo_list":
        items = [i for i in item.get("items") or [] if isinstance(i, dict)]
        return [Step(f"todo: {sum(bool(i.get('completed')) for i in items)}/{len(items)} done")]
    if itype == "error":
        return [Step(f"error: {one_line(item.get('message'))}")] if done else []
    name = one_line(itype, 40) or "item"
    return [Step(name, name)] if not done else []


def codex_steps(event: dict) -> list[Step]:
    kind = event.get("type")
    if kind == "thread.started":
        return [Step(f"thread {one_line(event.get('thread_id'), 80)} started", "starting")]
    if kind == "turn.started":
        return [Step("turn started")]
    if kind == "turn.completed":
        u = event.get("usage") if isinstance(event.get("usage"), dict) else {}
        return [Step(f"turn done: {_number(u.get('input_tokens')):,} tokens in, "
                     f"{_number(u.get('output_tokens')):,} out")]
    if kind in ("turn.failed", "error"):
        return [Step(f"{'turn failed' if kind == 'turn.failed' else 'error'}: "
                     f"{one_line(_error_message(event))}")]
    if kind in ("item.started", "item.updated", "item.completed") \
            and isinstance(event.get("item"), dict):
        if kind == "item.updated" and event["item"].get("type") != "todo_list":
            return []
        return codex_item_steps(kind, event["item"])
    return []


def _error_message(event: dict) -> str:
    error = event.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    message = event.get("message")
    return message if isinstance(message, str) else str(event.get("type"))


class CodexStream:
    """A ``codex exec --json`` run as its events come: steps, tokens so far, its answer."""

    def __init__(self) -> None:
        self.session_id: Optional[str] = None
        self.text: Optional[str] = None
        self.error: Optional[str] = None
        self.turns = Usage()
        self.in_turn = False

    def feed(self, event: dict) -> list[Step]:
        kind = event.get("type")
        if kind == "thread.started":
            self.session_id = session_id(event.get("thread_id"))
        elif kind == "turn.started":
            self.in_turn = True
        elif kind == "item.completed" and isinstance(event.get("item"), dict) \
                and event["item"].get("type") == "agent_message":
            self.text = str(event["item"].get("text", ""))
        elif kind == "turn.completed":
            u = event.get("usage") if isinstance(event.get("usage"), dict) else {}
            self.turns = self.turns + Usage(0.0, _number(u.get("input_tokens")),
                                            _number(u.get("output_tokens")),
                                            _number(u.get("cached_input_tokens")))
            self.in_turn = False
        elif kind in ("turn.failed", "error"):
            self.error = _error_message(event)
            self.in_turn = kind == "error" and self.in_turn
        return codex_steps(event)

    @property
    def usage(self) -> Usage:
        return self.turns

    cost_reported = False  # codex states no cost

    @property
    def complete(self) -> bool:
        """Its turns are closed: the tokens stated are all it used."""
        return not self.in_turn

    def reading(self) -> Optional[Reading]:
        if self.text is None and self.error is None:
            return None
        return Reading(text=self.error if self.error is not None else self.text,
                       usage=self.usage, session_id=self.session_id,
                       is_error=self.error is not None)
