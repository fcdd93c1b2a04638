"""``coffee-team``: the command line (sqlite-utils style: one group, commands registered on it).

``base`` holds the group, its context and shared helpers; ``lifecycle``, ``live``, ``data``,
``tasks`` and ``costs`` register their commands on it when imported. Each is imported when one
of its commands runs (``base.COMMAND_MODULES``), so ``coffee-team status`` does not pay for
the others' imports. Nothing in the product imports the CLI.
"""
from .base import main

__all__ = ["main"]
