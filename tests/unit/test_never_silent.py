"""A failure on the way to a running team is one line that names its cause: supervisord's
faults, programs that cannot start (the rules; the live cases are in
tests/integration/test_install_live.py), the watchdog and web lines of `status`, a missing
extra. (Tracing without its SDK and a closed pipe: tests/integration/test_never_silent_live.py.)"""
from __future__ import annotations

import os
import xmlrpc.client
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from coffee_team import client, extras, status
from coffee_team.cli import main
from coffee_team.cli.base import fault_line
from coffee_team.team import parse_team


def info(name, state, spawnerr="", description=""):
    return {"name": name, "statename": state, "spawnerr": spawnerr,
            "description": description or state.lower(), "pid": 0}


# --- programs that cannot start -------------------------------------------------------------

def test_a_spawn_error_fails_at_once_an_early_exit_is_retried_by_supervisord():
    infos = {"a": info("a", "BACKOFF", "can't find command '/x/python'"),
             "b": info("b", "BACKOFF", "Exited too quickly (process log may have details)"),
             "c": info("c", "FATAL"), "d": info("d", "STARTING")}
    assert client.start_failures(infos, ["a", "b", "c", "d"]) == ["a", "c"]
    assert client.spawn_error(infos["a"]) == "can't find command '/x/python'"
    assert client.spawn_error(infos["b"]) == ""


def test_the_watchdog_or_web_in_backoff_has_failed():
    # they exited within their first second: a retry does not mend a missing module
    infos = {"watchdog": info("watchdog", "BACKOFF", "Exited too quickly (…)"),
             "web": info("web", "STARTING")}
    assert client.start_failures(infos, [], ["watchdog", "web"]) == ["watchdog"]
    assert client.start_failures({"web": info("web", "RUNNING")}, [], ["watchdog", "web"]) == []


def test_wait_start_ends_at_the_first_failure_not_at_the_timeout():
    polls = iter([[info("watchdog", "STARTING"), info("a", "STOPPED")],
                  [info("watchdog", "BACKOFF", "Exited too quickly"), info("a", "STOPPED")]])
    now = [0.0]
    infos = client.wait_start(lambda: next(polls), ["a"], 60, helpers=["watchdog"],
                              clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert infos["watchdog"]["statename"] == "BACKOFF" and now[0] < 1


def test_wait_start_times_out_only_after_timeout_seconds_with_no_program_coming_up():
    # a big team comes up one agent every 40 s, under a 60 s timeout: never timed out; then
    # it stops moving: timed out 60 s after the last one came up, not 60 s after the call
    names = [f"a{i}" for i in range(5)]
    now = [0.0]

    def poll():
        up = min(len(names), 1 + int(now[0] // 40)) if now[0] < 120 else 3
        return [info(n, "RUNNING" if i < up else "STARTING") for i, n in enumerate(names)]
    infos = client.wait_start(poll, names, 60, clock=lambda: now[0],
                              sleep=lambda s: now.__setitem__(0, now[0] + s), interval=1.0)
    assert [i["statename"] for i in infos.values()].count("RUNNING") == 3
    assert 140 <= now[0] <= 141  # the third came up at 80 s; nothing after it


def test_wait_started_still_waits_for_every_agent_to_settle():
    polls = iter([[info("a", "FATAL"), info("b", "STARTING")],
                  [info("a", "FATAL"), info("b", "RUNNING")]])
    assert client.wait_started(lambda: next(polls), ["a", "b"], 60, sleep=lambda s: None) == \
        {"a": "FATAL", "b": "RUNNING"}


# --- status ----------------------------------------------------------------------------------

def test_status_shows_the_watchdog_and_web_when_they_do_not_run(tmp_path):
    team = parse_team({"agents": {"a": {}}}, "t", tmp_path / "data" / "team.yaml")
    infos = [info("a", "STOPPED", description="Not started"),
             info("watchdog", "FATAL", "can't find command '/x/python'"),
             info("web", "RUNNING")]
    data = status.collect(team, infos, os.getpid(), now=1.0)
    assert [(p["name"], p["state"]) for p in data["programs"]] == [("watchdog", "FATAL"),
                                                                    ("web", "RUNNING")]
    text = status.render(data)
    assert "  watchdog: FATAL (can't find command '/x/python')" in text.splitlines()
    assert "web:" not in text  # running: nothing to say
    infos[1] = info("watchdog", "RUNNING")
    assert "Programs:" not in status.render(status.collect(team, infos, os.getpid(), now=1.0))


# --- supervisord's faults --------------------------------------------------------------------

def test_a_fault_is_one_line_naming_the_call_and_what_to_do():
    fault = xmlrpc.client.Fault(20, "NO_FILE: can't find command '/p/.venv/bin/python'")
    fault.call = ("supervisor.startProcess", ("reviewer", False))
    line = fault_line(fault)
    assert line.startswith("supervisord refused startProcess reviewer: NO_FILE: can't find "
                           "command '/p/.venv/bin/python'; the program's command does not exist")
    assert "team.python" in line and "\n" not in line
    bare = xmlrpc.client.Fault(30, "FAILED: one\ntwo")
    assert fault_line(bare) == "supervisord refused a call: FAILED: one two"


def test_a_fault_no_command_handles_exits_1_in_one_line(tmp_path, monkeypatch):
    from coffee_team.cli import base

    def refuse(self, method, *args, **kwargs):
        if method == "supervisor.getAllProcessInfo":
            return [info("reviewer", "STOPPED")]
        exc = xmlrpc.client.Fault(50, "SPAWN_ERROR: reviewer")
        exc.call = (method, args)
        raise exc
    monkeypatch.setattr(base.Context, "rpc", refuse)
    team_file = tmp_path / "data" / "team.yaml"
    team_file.parent.mkdir(parents=True)
    team_file.write_text(yaml.safe_dump({"agents": {"reviewer": {}}}))
    result = CliRunner().invoke(main, ["--team", str(team_file), "restart", "reviewer"])
    assert result.exit_code == 1
    assert result.output == ("Error: supervisord refused startProcess reviewer: SPAWN_ERROR: "
                             "reviewer; supervisord could not start it: see `coffee-team logs "
                             "reviewer`\n")


# --- missing extras --------------------------------------------------------------------------

def without(monkeypatch, *modules: str) -> None:
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda m: m not in modules and real(m))


def team_file(tmp_path: Path, team: dict) -> Path:
    path = tmp_path / "data" / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"team": team, "agents": {"a": {}}}))
    return path


def test_postgres_without_its_driver_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    without(monkeypatch, "psycopg2")
    path = team_file(tmp_path, {"database_path": "postgresql://u@localhost/db"})
    for args in (["gen-config"], ["start"], ["queue"]):
        result = CliRunner().invoke(main, ["--team", str(path), *args])
        assert result.exit_code in (1, 2), result.output
        assert result.output.count("\n") == 1, result.output
        assert "pip install 'coffee-team[postgres]'" in result.output
    from coffee_team.queue import MessageQueue
    with pytest.raises(extras.MissingExtra, match=r"coffee-team\[postgres\]"):
        MessageQueue("postgresql://u@localhost/db")


def test_notify_urls_without_apprise_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    without(monkeypatch, "apprise")
    path = team_file(tmp_path, {"notify": [{"url": "json://localhost/hook"}]})
    result = CliRunner().invoke(main, ["--team", str(path), "gen-config"])
    assert result.exit_code == 2
    assert result.output == ("Error: team.notify: url targets needs Apprise: "
                             "pip install 'coffee-team[notify]'\n")


def test_start_on_a_full_disk_names_the_disk_and_its_free_space(tmp_path, monkeypatch):
    """Not SQLite's "disk I/O error": which filesystem, how much is free, what to do."""
    from coffee_team import diskspace
    team_file = tmp_path / "data" / "team.yaml"
    team_file.parent.mkdir(parents=True)
    team_file.write_text(yaml.safe_dump({"agents": {"reviewer": {}}}))
    assert CliRunner().invoke(main, ["--team", str(team_file), "gen-config"]).exit_code == 0
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 12 * 1024)
    result = CliRunner().invoke(main, ["--team", str(team_file), "start"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and line.startswith("Error: disk full: ")
    assert "(filesystem /" in line and "12 KiB free" in line and "coffee-team start" in line
    assert not (tmp_path / "data" / "orchestrator.db").exists()


def test_a_database_that_cannot_be_written_for_want_of_space_names_the_disk(tmp_path,
                                                                            monkeypatch):
    from coffee_team import diskspace
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 0)
    line = diskspace.full_line(tmp_path / "data" / "orchestrator.db")
    assert line.startswith(f"disk full: {tmp_path} (filesystem /") and "0 KiB free" in line
