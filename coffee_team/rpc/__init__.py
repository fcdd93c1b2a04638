"""The ``[rpcinterface:coffee]`` plugin: the ``coffee.*`` XML-RPC namespace served by supervisord
itself, next to ``supervisor.*`` (factory ``coffee_team.rpc.interface:make_coffee_rpcinterface``).

``interface`` holds the namespace and the reaping of dead agents' work; ``tasks``, ``journal`` and
``costs`` add method groups; ``values`` checks what crosses the XML-RPC boundary; ``queue`` opens
the plugin's queue (supervisord's single thread never waits on it); ``signals`` wakes
supervisord's poll() when an agent dies. A process package: it runs inside supervisord, imports
no other process package, and nothing imports it.
"""
