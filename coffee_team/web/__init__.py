"""The web program (``python -m coffee_team.web --team PATH``): the team's dashboard page,
its JSON and actions, and Prometheus ``/metrics``. ``gen-config`` runs it as
``[program:web]`` when the team file has ``team.web``.

``snapshot`` gathers the data (supervisord's ``coffee.getTeamStatus`` + the queue database),
``actions`` maps the buttons to ``coffee.*`` calls, ``server`` is the HTTP server, ``main``
the entry point; ``page.html`` is the whole page (no build step).
"""
