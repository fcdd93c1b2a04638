"""The one check on every value the queue stores: task content, results, follow-ups (and
the names and priority that go with them).

Every door (the Python API, the CLI, XML-RPC, a handler's result) goes through
``encode_json``: JSON-serialisable, finite numbers only, nested at most ``MAX_CONTENT_DEPTH``
levels, at most ``MAX_CONTENT_BYTES`` encoded. ``decode_stored`` reads a stored value back and
survives rows an older version let in (nested ~1000 deep): they come back as a short
placeholder text instead of a RecursionError somewhere far from the database.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from coffee_team.errors import ContentError

MAX_CONTENT_BYTES = 1024 * 1024
# Deep enough for any real document, shallow enough that every recursive reader (json, the
# XML-RPC marshaller, pretty-printers) stays far from Python's recursion limit.
MAX_CONTENT_DEPTH = 64
MAX_NAME_CHARS = 100
MAX_DEDUPE_KEY_CHARS = 200
PRIORITY_RANGE = range(0, 10)


class TooDeep(ContentError):
    """A value nested more than MAX_CONTENT_DEPTH levels deep."""


def nesting_depth(value: Any, limit: int = MAX_CONTENT_DEPTH) -> int:
    """Depth of nested lists/dicts, counting iteratively (no recursion) and stopping at limit."""
    stack, deepest = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _json_encoder() -> Callable[[Any], str]:
    """Compact, strict (no NaN) JSON.  JSONEncoder.encode() builds a new C
    encoder on every call, most of the cost for small values; build one once
    (no circular-reference markers: a cycle ends in RecursionError instead)."""
    plain = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        fast = make(None, plain.default, json.encoder.encode_basestring_ascii,  # type: ignore
                    None, ":", ",", False, False, False)
        sample = {"k": [1, 2.5, "\u00e9\n", None, True, {"0": "x"}]}
        if "".join(fast(sample, 0)) == plain.encode(sample):
            return lambda value: "".join(fast(value, 0))
    except Exception:  # pragma: no cover - no C accelerator or another signature
        pass
    return plain.encode


_to_json = _json_encoder()


def _may_be_too_deep(text: str) -> bool:
    """No more than MAX_CONTENT_DEPTH brackets in all: certainly not too deep (C-speed counts,
    so the common small value skips the walk)."""
    return text.count("[") + text.count("{") > MAX_CONTENT_DEPTH


def too_deep_message(what: str) -> str:
    return f"{what} is nested more than {MAX_CONTENT_DEPTH} levels deep"


def check_depth(value: Any, what: str) -> None:
    if nesting_depth(value, MAX_CONTENT_DEPTH) > MAX_CONTENT_DEPTH:
        raise TooDeep(too_deep_message(what))


def encode_json(value: Any, what: str) -> str:
    """``value`` as the compact JSON text the queue stores, or ContentError saying why not."""
    if value is None:
        return "null"
    try:
        text = _to_json(value)
    except RecursionError:  # a cycle, or nesting deeper than the interpreter allows
        raise TooDeep(f"{too_deep_message(what)} (or refers to itself)") from None
    except (TypeError, ValueError) as exc:
        raise ContentError(f"{what} is not JSON-serialisable: {exc}") from None
    # ensure_ascii (the default) makes len(text) the encoded size in bytes.
    if len(text) > MAX_CONTENT_BYTES:
        raise ContentError(f"{what} is {len(text)} bytes encoded; the limit is {MAX_CONTENT_BYTES}")
    if _may_be_too_deep(text):
        check_depth(value, what)
    return text


def check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ContentError(f"{what} must be a non-empty string of at most {MAX_NAME_CHARS} characters")


def check_priority(priority: Any) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITY_RANGE:
        raise ContentError(f"priority must be an int from 0 (most urgent) to 9, got {priority!r}")


def load_json_text(text: str, what: str) -> Any:
    """A JSON document given as text at a door (CLI, XML-RPC), held to the same limits."""
    if len(text) > MAX_CONTENT_BYTES:
        raise ContentError(f"{what} is {len(text)} characters; the limit is {MAX_CONTENT_BYTES}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(too_deep_message(what)) from None
    except ValueError as exc:
        raise ContentError(f"{what} is not valid JSON: {exc}") from None
    if _may_be_too_deep(text):
        check_depth(value, what)
    return value


def unreadable(text: str, what: str) -> str:
    return f"<{what} not shown: nested more than {MAX_CONTENT_DEPTH} levels deep, {len(text)} bytes>"


# json.loads' own C scanner, called directly for the compact texts the queue stores: loads()
# adds two Python calls and a regex match around it, most of reading a small value.
_scan_once = json.decoder.JSONDecoder().scan_once


def _loads(text: str) -> Any:
    """json.loads(text); anything but one JSON value filling the whole text (surrounding
    whitespace, invalid JSON) goes through json.loads itself, with its errors."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


def read_stored(text: str) -> tuple[Any, bool]:
    """(value, True) for a stored JSON text; (None, False) for one nested too deep (written
    before this check), which no reader could safely walk."""
    try:
        value = _loads(text)
    except RecursionError:
        return None, False
    if _may_be_too_deep(text) and nesting_depth(value, MAX_CONTENT_DEPTH) > MAX_CONTENT_DEPTH:
        return None, False
    return value, True


def decode_stored(text: str | None, what: str) -> Any:
    """A stored value for display, or a placeholder text for one nested too deep."""
    if text is None:
        return None
    value, readable = read_stored(text)
    return value if readable else unreadable(text, what)
