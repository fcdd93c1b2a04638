"""The team's dashboard, served by the web program under supervisord (``coffee_team.web``) and
by the control plane on Kubernetes (``coffee_team.controlplane``): a library, so neither
process imports the other.

``snapshot`` gathers the data (the agents' status, by supervisord's ``coffee.getTeamStatus``
or from the database's instance rows, + the queue database), ``actions`` maps the buttons to
``coffee.*`` calls, ``server`` is the HTTP server, ``httpd`` its limits; ``page.html`` is the
whole page (no build step).
"""
