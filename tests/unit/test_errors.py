"""An error as one line (coffee_team.errors): written once, used by the CLI, the rpc plugin,
the web program, the agent and the team file's parser."""
from __future__ import annotations

import xmlrpc.client

import pytest
import yaml

from coffee_team.cli.hosts import _one_line as host_error
from coffee_team.errors import (DatabaseUnavailable, TeamError, describe_error, error_line,
                                first_line)
from coffee_team.rpc.queue import one_line as rpc_open_error
from coffee_team.team import load_team


@pytest.mark.parametrize("text, line", [
    ("disk full", "disk full"),
    ("disk full\n  at /data\nTraceback...", "disk full"),
    ("\n\n  first  \nsecond", "first"),
    ("", ""), ("  \n\t\n", ""),
])
def test_first_line(text, line):
    assert first_line(text) == line


def test_error_line_falls_back_to_the_type():
    assert error_line(ValueError("bad value\nmore")) == "bad value"
    assert error_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert error_line(OSError("\n")) == "OSError"


def test_describe_error_names_the_type():
    assert describe_error(ValueError("bad value\nmore")) == "ValueError: bad value"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_the_rpc_plugin_and_the_cli_use_it():
    assert rpc_open_error(DatabaseUnavailable("no route\ndetail")) == "no route"
    assert rpc_open_error(DatabaseUnavailable("")) == "DatabaseUnavailable"
    assert rpc_open_error(OSError("gone\nx")) == "OSError: gone"
    assert host_error(xmlrpc.client.Fault(1, "UNKNOWN_METHOD\ntrace")) == "UNKNOWN_METHOD"
    assert host_error(xmlrpc.client.Fault(1, "")) == "Fault"
    assert host_error(ConnectionRefusedError("refused\nmore")) == "refused"


def test_a_yaml_error_without_a_problem_is_one_line(tmp_path, monkeypatch):
    """The parser's fallback (an error that has no ``problem``) is the message's first line."""
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir()
    path.write_text("team: {}\n")

    def broken(*_a, **_k):
        raise yaml.YAMLError("")
    monkeypatch.setattr(yaml, "load", broken)
    with pytest.raises(TeamError, match=r"team\.yaml: invalid YAML: YAMLError$"):
        load_team(path)
