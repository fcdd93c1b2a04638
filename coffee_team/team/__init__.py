"""The team file (``data/team.yaml``): ``parse`` reads and validates it, ``spec`` is the team as
the program sees it (frozen dataclasses), ``fields`` holds one checker per key, ``llm`` the
checkers of an llm agent's keys (imported only for a team that has llm agents or budgets),
``interpreter`` the interpreter the programs run with (``team.python``, else coffee-team's own).

A library: every process reads the team; it never imports the queue.
"""
from .parse import load_team, parse_team, parse_team_text, read_team_text
from .spec import (WEB_PROGRAM, AgentSpec, HostSpec, HttpSettings, NotifyTarget, Team,
                   TeamSettings, check_http)

__all__ = ["load_team", "parse_team", "parse_team_text", "read_team_text", "WEB_PROGRAM",
           "AgentSpec", "HostSpec", "HttpSettings", "NotifyTarget", "Team", "TeamSettings",
           "check_http"]
