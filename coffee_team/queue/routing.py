"""Who receives a task: pure functions, no I/O, no clock."""
from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence

from coffee_team.errors import RoutingError

BROADCAST = "all"
AGENT_NAME_RE = re.compile(r"[a-z0-9_-]+")


def resolve_recipients(
    recipient: Optional[str],
    task_type: str,
    agents: Sequence[str],
    handles: Mapping[str, Sequence[str]],
) -> list[str]:
    """Return the agents that get one copy each of a task.

    - a known agent name          -> [that agent]
    - "all"                       -> every agent, in team order (broadcast)
    - None / ""                   -> the first agent (team order) whose
                                     ``handles`` lists ``task_type``
    - ``agents`` empty (no team)  -> any name matching [a-z0-9_-]+ is accepted
                                     ("all" and routing by type then fail)
    """
    agents = list(agents)
    if recipient:
        if recipient == BROADCAST:
            if not agents:
                raise RoutingError(
                    "cannot broadcast to 'all': no team agents are configured"
                )
            return agents
        if agents:
            if recipient in agents:
                return [recipient]
            raise RoutingError(
                f"unknown recipient {recipient!r}; known agents: {', '.join(agents)}"
            )
        if AGENT_NAME_RE.fullmatch(recipient):
            return [recipient]
        raise RoutingError(
            f"invalid recipient {recipient!r}; agent names match [a-z0-9_-]+"
        )
    for agent in agents:
        if task_type in handles.get(agent, ()):
            return [agent]
    routable = sorted({t for a in agents for t in handles.get(a, ())})
    listed = ", ".join(routable) if routable else "none"
    raise RoutingError(
        f"no agent handles task type {task_type!r}; routable types: {listed}"
    )
