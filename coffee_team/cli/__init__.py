"""``coffee-team``: the command line (sqlite-utils style: one group, commands registered on it).

``base`` holds the group, its context and shared helpers; ``lifecycle``, ``live``, ``data``,
``tasks`` and ``costs`` register their commands on it when imported. Each is imported when one
of its commands runs (``base.COMMAND_MODULES``), so ``coffee-team status`` does not pay for
the others' imports. Nothing in the product imports the CLI.
"""
import os
import signal
import sys


def _interrupted_early(signum, frame):  # Ctrl+C while the command line is still loading
    os.write(2, b"interrupted\n")
    os._exit(130)


def _is_the_command_line() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return os.path.basename(sys.argv[0] if sys.argv else "") == "coffee-team" or \
        getattr(spec, "name", "") == "coffee_team.__main__"


if _is_the_command_line() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_early)  # main() puts the default one back

from .base import main  # noqa: E402

__all__ = ["main"]
