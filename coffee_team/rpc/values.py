"""Values across the XML-RPC boundary: what may go out (no None, 32-bit ints, no XML-illegal
characters) and the checks on what comes in, each failing as a one-line fault."""
from __future__ import annotations

import functools
import inspect
import json
import math
import re
from typing import Any, Callable

from supervisor.xmlrpc import Faults, RPCError

from coffee_team.queue.content import MAX_CONTENT_DEPTH
from coffee_team.queue.db import is_busy
from coffee_team.team.fields import describe as short

MAX_LIMIT = 1000
MAX_DAYS = 3650
MAXINT = 2**31 - 1
MININT = -(2**31)
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Unset:
    """Marks a value to leave out of a struct (XML-RPC has no None)."""


def xmlrpc_safe(value: Any, depth: int = 0) -> Any:
    """``value`` made marshallable by xmlrpc.client without ``allow_none``.

    ``None`` inside a struct drops the key and becomes ``''`` inside an array; integers outside
    the 32-bit range become floats; NaN/inf become strings; anything nested deeper than
    ``MAX_CONTENT_DEPTH`` (or of an unknown type) becomes its JSON/str text.
    """
    if value is None:
        return Unset
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if MININT <= value <= MAXINT else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _XML_ILLEGAL.sub("\ufffd", value)
    if depth >= MAX_CONTENT_DEPTH:
        return xmlrpc_safe(json.dumps(value, default=str), 0)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = xmlrpc_safe(item, depth + 1)
            if item is not Unset:
                out[_XML_ILLEGAL.sub("\ufffd", str(key))] = item
        return out
    if isinstance(value, (list, tuple)):
        items = (xmlrpc_safe(item, depth + 1) for item in value)
        return ["" if item is Unset else item for item in items]
    return xmlrpc_safe(str(value), depth)


def one_line(text: str, limit: int = 300) -> str:
    """Fault messages stay short: an echoed 2 MB argument must not come back 2 MB."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def kind_of(value: Any) -> str:
    names = {bool: "a boolean", int: "an int", float: "a double", str: "a string",
             dict: "a struct", list: "an array"}
    return names.get(type(value), type(value).__name__)


def check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise RPCError(Faults.BAD_ARGUMENTS,
                       f"limit must be an int from 1 to {MAX_LIMIT}, got {short(value)}")
    return value


def check_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAXINT:
        raise RPCError(Faults.BAD_ARGUMENTS,
                       f"{what} must be an int from 0 to {MAXINT}, got {short(value)}")
    return value


def check_days(days: Any) -> float:
    """A window in days: a number above 0 and at most MAX_DAYS."""
    if isinstance(days, bool) or not isinstance(days, (int, float)) \
            or not math.isfinite(days) or not 0 < days <= MAX_DAYS:
        raise RPCError(Faults.BAD_ARGUMENTS,
                       f"days must be a number above 0 and at most {MAX_DAYS}, got {short(days)}")
    return float(days)


def rpc_method(func: Callable) -> Callable:
    """Make a method an RPC endpoint: arity checked with a clear message, SHUTDOWN_STATE
    refused like supervisor does, unexpected exceptions turned into Faults (never HTTP 500),
    and the result made XML-RPC safe."""
    signature = inspect.signature(func)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    names = ", ".join(p.name for p in params)
    arity = str(required) if required == len(params) else f"{required} to {len(params)}"

    @functools.wraps(func)
    def method(self, *args):
        if not required <= len(args) <= len(params):
            raise RPCError(Faults.INCORRECT_PARAMETERS,
                           f"coffee.{func.__name__}({names}) takes {arity} argument(s), "
                           f"got {len(args)}")
        self._update(func.__name__)
        try:
            result = func(self, *args)
        except RPCError as exc:
            exc.text = one_line(exc.text)
            raise
        except Exception as exc:
            fault = self._fault(func.__name__, exc)
            fault.text = one_line(fault.text)
            raise fault from None
        if callable(result):
            return result  # deferred: the callback does its own checks
        result = xmlrpc_safe(result)
        return "" if result is Unset else result

    return method


def expected_fault(exc: Exception) -> RPCError | None:
    """The fault for an error the caller caused or the database's state explains (None for
    anything else). A database that is busy, locked or past the rpcinterface's time limit is
    a FAILED fault at once: the caller retries, supervisord never waits."""
    from coffee_team.errors import (ApprovalDecided, ApprovalNotFound, ContentError,
                                    DatabaseUnavailable, QueueFullError, TaskNotFound,
                                    TaskStateError, UnroutableError, error_line)
    if isinstance(exc, (TaskNotFound, ApprovalNotFound)):
        return RPCError(Faults.BAD_ARGUMENTS, str(exc))
    if isinstance(exc, (TaskStateError, ApprovalDecided)):
        return RPCError(Faults.FAILED, str(exc))
    if isinstance(exc, UnroutableError):
        return RPCError(Faults.BAD_NAME, str(exc))
    if isinstance(exc, QueueFullError):
        return RPCError(Faults.FAILED, f"queue full: {exc}")
    if isinstance(exc, ContentError):
        return RPCError(Faults.BAD_ARGUMENTS, str(exc))
    if isinstance(exc, DatabaseUnavailable):
        return RPCError(Faults.FAILED, f"database unavailable ({exc}); retry the call")
    if is_busy(exc):
        return RPCError(Faults.FAILED, f"database busy ({error_line(exc)}); retry the call")
    return None
