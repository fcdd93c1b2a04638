"""The web program (``python -m coffee_team.web --team PATH``): the team's dashboard page,
its JSON and actions, Prometheus ``/metrics``, and XML-RPC over HTTP. ``gen-config`` runs it
as ``[program:web]`` when the team file has ``team.web`` or ``team.http``.

The dashboard itself is the library's (``coffee_team.dashboard``: the control plane serves
it too); here are ``main``, the entry point, and ``rpcproxy``, the XML-RPC gateway to
supervisord's unix socket.
"""
