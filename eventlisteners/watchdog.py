"""The watchdog event listener: launch order, backoff restarts, give-up, heartbeats, CPU/RSS.

A thin entry point for a checkout (``python eventlisteners/watchdog.py --team ...``). The
generated config does not use it: supervisord runs ``python -m coffee_team.watchdog``, which
works from any install of the package. The logic lives in ``coffee_team.watchdog``.
"""
import sys

from coffee_team.watchdog.main import main

if __name__ == "__main__":
    sys.exit(main())
