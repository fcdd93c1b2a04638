"""The optional dependencies (pyproject's extras): a missing one is one line naming the extra.

Nothing here imports them: ``find_spec`` only looks, so a team that never uses PostgreSQL,
Apprise or OpenTelemetry never pays for them.
"""
from __future__ import annotations

import importlib.util

from .errors import CoffeeError

# extra: (the modules it provides, what a person would call them)
EXTRAS = {
    "postgres": (("psycopg2",), "the PostgreSQL driver psycopg2"),
    "notify": (("apprise",), "Apprise"),
    "otel": (("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
             "the OpenTelemetry SDK and its OTLP exporter"),
    "mcp": (("mcp",), "the MCP SDK"),
}


class MissingExtra(CoffeeError):
    """An optional dependency the team needs is not installed; ``str()`` says which extra."""


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module blocked as None
        return False


def missing(extra: str, needed_for: str) -> str | None:
    """One line if ``extra`` is not installed: what needs it and how to install it."""
    modules, name = EXTRAS[extra]
    if all(installed(m) for m in modules):
        return None
    return f"{needed_for} needs {name}: pip install 'coffee-team[{extra}]'"


def require(extra: str, needed_for: str) -> None:
    message = missing(extra, needed_for)
    if message:
        raise MissingExtra(message)
