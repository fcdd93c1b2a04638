"""Pure rules of work over time, shared by the watchdog, the CLI and the rpc plugin: cron slots
(``cron``: the only module that imports cronsim), the wait-for graph's cycles (``waits``) and
the memory trend (``trend``). Functions of (state, now): no clock, no database, no process.
"""
