"""coffee-team: a team of agent programs under supervisord, talking through one task queue.

The public API is ``__all__``; everything else is internal and may move. Each name is imported
on first use (module ``__getattr__``, PEP 562): every process imports this package, and an
agent must not pay for the queue, the team file's checkers or the handlers it does not use.
"""

__all__ = ["CoffeeError", "HandlerContext", "load_team", "MessageQueue", "Team"]

# name -> the module that defines it (its documented home).
_HOMES = {
    "CoffeeError": "coffee_team.errors",
    "HandlerContext": "coffee_team.handlers",
    "MessageQueue": "coffee_team.queue",
    "Team": "coffee_team.team",
    "load_team": "coffee_team.team",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'coffee_team' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
