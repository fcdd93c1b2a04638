"""The control plane (``coffee-team control-plane``: ``python -m coffee_team.controlplane``):
on Kubernetes, the one process that does the team's cluster duties supervisord's plugin and
the watchdog do on one host, without supervisord: a dead agent's work requeued, escalation,
schedules, wait cycles, notification deliveries, cleanup, and the dashboard with /metrics and
/healthz. Crash restarts are the kubelet's (the agents' probes: ``agent probe``).

``duties`` is the loop, ``http`` the port, ``main`` the entry point.
"""
