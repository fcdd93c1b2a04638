"""The team file (``data/team.yaml``): ``parse`` reads and validates it, ``spec`` is the team as
the program sees it (frozen dataclasses), ``fields`` holds one checker per key, ``llm`` the
checkers of an llm agent's keys (imported only for a team that has llm agents or budgets),
``interpreter`` the interpreter the programs run with (``team.python``, else coffee-team's own),
``snapshot`` the compiled team an agent starts from (no YAML) while it is fresh.

A library: every process reads the team; it never imports the queue. The parser (and YAML)
is imported on first use of its names (PEP 562), so a module that only describes a Team, or
an agent starting from the snapshot, does not load it.
"""
from .spec import (WEB_PROGRAM, AgentSpec, HostSpec, HttpSettings, NotifyTarget, Team,
                   TeamSettings, check_http)

__all__ = ["load_team", "parse_team", "parse_team_text", "read_team_text", "WEB_PROGRAM",
           "AgentSpec", "HostSpec", "HttpSettings", "NotifyTarget", "Team", "TeamSettings",
           "check_http"]
_PARSER = ("load_team", "parse_team", "parse_team_text", "read_team_text")


def __getattr__(name: str):
    if name in _PARSER:
        from . import parse
        return getattr(parse, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
