"""Follow-ups that cannot be delivered: sorted out, recorded on the task, said once.

A handler's answer may ask for several follow-ups (``send`` in its result, ``ctx.send``). Each
is checked as ``send()`` would check it (an unknown recipient, a type no agent handles, bad
content, a malformed entry): the good ones are sent with the completion, the bad ones are
kept in the task's result under ``undelivered`` (``{"follow_up", "error"}`` each) and named in
one silent WARNING. One bad follow-up never costs the others, nor the task's own result.
The queue writes the good ones with the completion, in one transaction: when it refuses them
there (a recipient's queue full), none is sent, and they are recorded and said the same way.

However many there are (an answer may ask for ten thousand), what is stored and said stays
small: the first KEPT records in the result (``undelivered_count`` tells how many there were),
the first SAID in the notification.

Pure: ``check`` is the queue's (``MessageQueue.undeliverable``).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

PREVIEW_CHARS = 200
KEPT = 100  # undelivered records kept in the task's result (~50 KB at most)
SAID = 10   # named in the notification
MESSAGE_KEYS = ("recipient", "type", "priority")


def preview(value: Any) -> Any:
    """What is kept of a follow-up that was not sent: its routing, the content in short."""
    if not isinstance(value, dict):
        return _short(value)
    kept = {k: value[k] for k in MESSAGE_KEYS if k in value}
    if "content" in value:
        kept["content"] = None if value["content"] is None else _short(value["content"])
    return kept


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def sort(messages: list[Any], check: Callable[[Any], Optional[str]],
         malformed: list[tuple[Any, str]] = ()) -> tuple[list[dict], list[dict]]:
    """(the messages to send, the undelivered records): ``check`` says why one cannot be sent;
    ``malformed`` are entries already found malformed, with why."""
    good, bad = [], [{"follow_up": preview(m), "error": why} for m, why in malformed]
    for message in messages:
        why = check(message)
        if why is None:
            good.append(message)
        else:
            bad.append({"follow_up": preview(message), "error": why})
    return good, bad


def unsent(messages: list[dict], error: str) -> list[dict]:
    """Every message as undelivered with one reason (e.g. the queue refused the batch)."""
    return [{"follow_up": preview(m), "error": error} for m in messages]


def recorded(result: Any, undelivered: list[dict]) -> Any:
    """The task's result with the undelivered follow-ups in it (a result that is not a
    mapping is kept under ``value``)."""
    if not undelivered:
        return result
    kept: dict[str, Any] = {"undelivered": undelivered[:KEPT]}
    if len(undelivered) > KEPT:
        kept["undelivered_count"] = len(undelivered)
    if result is None:
        return kept
    if not isinstance(result, dict):
        return {"value": result, **kept}
    return {**result, **kept}


def notice(agent: str, task_id: Optional[int], undelivered: list[dict],
           sent: int = 1) -> tuple[str, str]:
    """(title, message) of the one WARNING for a task's (or periodic run's) bad follow-ups;
    ``sent``: how many of its follow-ups were sent."""
    what = f"task #{task_id}" if task_id is not None else "its periodic run"
    count = len(undelivered)
    title = f"{agent}: {count} follow-up{'s' if count != 1 else ''} of {what} not sent"
    lines = []
    for entry in undelivered[:SAID]:
        message = entry["follow_up"]
        if isinstance(message, dict):
            name = f"{message.get('type')!s} to {message.get('recipient') or '(routed by type)'}"
        else:
            name = repr(message)[:80]
        lines.append(f"{name}: {entry['error']}")
    if count > SAID:
        lines.append(f"and {count - SAID} more (the task's result lists the first {KEPT})")
    others = "the others were sent" if sent else "none was sent"
    return title, f"{title} ({others}): " + "; ".join(lines)
