"""The watchdog event listener that supervisord runs (``[eventlistener:watchdog]`` in the
generated config): launch order, backoff restarts, give-up, heartbeats, CPU/RSS checks.

A thin entry point. The logic lives in ``coffee_team.watchdog`` so the CLI, the rpcinterface
and the tests can import it; this folder is not an installed package.
"""
import sys

from coffee_team.watchdog.listener import main

if __name__ == "__main__":
    sys.exit(main())
