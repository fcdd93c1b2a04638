"""The agent program: ``coffee-team agent run NAME`` (``python -m coffee_team agent run NAME``)
is the command of every ``[program:<agent>]`` supervisord runs.

``runtime`` is the program: it takes the agent's lock (``locks``: one instance per agent, on one
host or across hosts), opens the queue, claims tasks and runs each through ``execution``; ``pulse``
is the heartbeat thread that keeps liveness and leases while a handler works; ``standby`` is the
instance on a host whose agent runs elsewhere; ``demo`` and ``faults`` are built-in handlers (the
seed's pattern; fault injection for tests and benchmarks). A process package: nothing outside it
imports it, and it imports no other process package.
"""
