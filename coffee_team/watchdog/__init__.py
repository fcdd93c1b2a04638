"""The watchdog: supervisord's ``[eventlistener:watchdog]`` (PROCESS_STATE and TICK events).

``main`` is the entry (``python -m coffee_team.watchdog`` runs it: the team, the database,
the threads beside the loop), ``listener`` the protocol loop and its decisions, ``protocol``
speaks supervisor's listener protocol on stdin/stdout (stdout is the protocol: nothing else
may print there), ``startup`` and ``launch`` boot the team in priority order, ``checks`` runs
the health checks, ``health`` samples each agent's process tree, ``clocksteps`` meets
wall-clock steps, and ``policy`` holds the watchdog's own pure rules (heartbeats, resources, what a crash is, the boot's group wait); the
restart rules it shares with the CLI and the plugin live in ``coffee_team.restarts``. A process
package: nothing imports it, and it imports no other process package.
"""
