"""``python -m coffee_team.watchdog``: the event listener supervisord runs
(``[eventlistener:watchdog]`` in the generated config), from whatever install of the package."""
import sys

from coffee_team.watchdog.main import main

sys.exit(main())
