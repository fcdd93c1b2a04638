"""``coffee-team``: the command line (sqlite-utils style: one group, commands registered on it).

``base`` holds the group, its context and shared helpers; ``lifecycle``, ``live``, ``data``,
``tasks`` and ``costs`` register their commands on it when imported here. Nothing in the
product imports the CLI.
"""
from . import costs, data, lifecycle, live, tasks  # noqa: F401  (register their commands on main)
from .base import main

__all__ = ["main"]
