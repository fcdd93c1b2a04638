"""``coffee.getCosts``: what the llm agents spent, as ``coffee-team costs --json`` shows it.

A mixin of CoffeeNamespaceRPCInterface (which provides ``_queue_`` and ``_now``), kept apart
so rpcinterface.py stays about the team. One read of the usage table, grouped in SQL.
"""
from __future__ import annotations

from typing import Any

from coffee_team.queue.usage import COST_GROUPS
from coffee_team.rpc.values import check_days, rpc_method


class CostsRPC:
    _queue_: Any
    _now: Any

    @rpc_method
    def getCosts(self, by="agent", days=7):
        """ Return the cost and tokens of the llm agents' CLI runs, as the CLIs reported them

        @param string by     agent, type or day (UTC), default agent
        @param double days   Window in days (0 < days <= 3650, default 7)
        @return struct costs by, since (epoch), groups (array of structs: key, runs,
                             cost_usd, tokens_in, tokens_out, cache_read, cache_write) and
                             total (the same fields)
        """
        from supervisor.xmlrpc import Faults, RPCError
        if not isinstance(by, str) or by not in COST_GROUPS:
            raise RPCError(Faults.BAD_ARGUMENTS, f"by must be one of {', '.join(COST_GROUPS)}")
        days = check_days(days)
        return self._queue_().costs(self._now() - days * 86400, by)
