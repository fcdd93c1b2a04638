"""Live operations without processes: apply's plan, the team reload of the watchdog, status
that tells the future, notify targets and their deliverer, the systemd unit, completion and a
project path holding '%'."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from coffee_team import notify, status
from coffee_team.cli import apply
from coffee_team.cli import main
from coffee_team.errors import TeamError
from coffee_team.queue import MessageQueue
from coffee_team.team import parse_team
from tests.clock import FakeClock
from tests.watchdog_rig import Rig

AGENTS = {"alpha": {"priority": 1}, "beta": {"priority": 2}, "gamma": {"priority": 3}}


def team_of(agents: dict, **settings):
    return parse_team({"team": settings, "agents": agents}, "t", path=Path("/srv/p/data/team.yaml"))


# --- apply's plan (pure) ---------------------------------------------------------------------

def test_plan_names_added_removed_changed_and_unchanged_in_priority_order():
    old = team_of(AGENTS)
    new = team_of({"delta": {"priority": 0}, "alpha": {"priority": 1},
                   "beta": {"priority": 2, "check_interval": 60},     # read by the agent
                   "gamma": {"priority": 3, "environment": {"X": "1"}}})  # in its section
    plan = apply.plan(old, new)
    assert (plan.added, plan.removed, plan.unchanged) == (("delta",), (), ("alpha",))
    assert plan.changed == ("beta", "gamma") and plan.regrouped == ("gamma",)
    assert plan.notes == ()  # same number of agents: the main config is the same


def test_plan_of_the_same_team_moves_nothing_and_team_settings_restart_only_where_read():
    assert apply.plan(team_of(AGENTS), team_of(AGENTS)).empty
    watchdog_only = apply.plan(team_of(AGENTS), team_of(AGENTS, restart_backoff=5.0))
    assert watchdog_only.empty
    every_agent = apply.plan(team_of(AGENTS), team_of(AGENTS, heartbeat_interval=10))
    assert every_agent.changed == ("alpha", "beta", "gamma") and not every_agent.regrouped


def test_plan_removes_and_notes_a_main_config_change():
    many = {f"a{i}": {"priority": i} for i in range(8)}  # listener buffer grows past 7 agents
    plan = apply.plan(team_of(AGENTS), team_of(many))
    assert plan.removed == ("alpha", "beta", "gamma") and len(plan.added) == 8
    assert "supervisord.conf changed" in plan.notes[0]


def test_supervisors_own_diff_finishes_a_half_done_apply():
    team = team_of(AGENTS)
    plan = apply.with_supervisor_diff(apply.plan(team, team), team,
                                      [["gamma"], ["beta", "watchdog"], []])
    assert (plan.added, plan.changed, plan.regrouped) == (("gamma",), ("beta",), ("beta",))
    assert plan.unchanged == ("alpha",)


def test_apply_with_a_bad_team_file_or_no_supervisord(tmp_path):
    team_file = project_with(tmp_path)
    runner = CliRunner()
    dry = runner.invoke(main, ["--team", str(team_file), "apply", "--dry-run"])
    assert dry.exit_code == 0 and "supervisord is not running: nothing to apply" in dry.output
    assert not (tmp_path / "supervisord.conf.d").exists()
    done = runner.invoke(main, ["--team", str(team_file), "apply"])
    assert done.exit_code == 0 and "config written" in done.output
    assert (tmp_path / "supervisord.conf.d" / "agent-alpha.conf").exists()
    team_file.write_text("agents: {alpha: {priority: high}}\n")
    bad = runner.invoke(main, ["--team", str(team_file), "apply"])
    assert bad.exit_code == 2 and "agents.alpha.priority: expected an integer" in bad.output


# --- the watchdog takes the new team on SIGHUP -------------------------------------------------

def test_watchdog_reloads_on_request_and_keeps_the_old_team_on_a_bad_file(tmp_path):
    rig = Rig(tmp_path)
    try:
        bigger = team_of({**{n: {"priority": 1} for n in rig.team.names}, "tester": {}})
        rig.wd.load_team = lambda: bigger
        rig.wd.on_timer()
        assert "tester" not in rig.wd.names  # nothing without the signal
        rig.wd.request_reload(1, None)
        rig.wd.on_timer()
        assert "tester" in rig.wd.names and rig.queue.agents == bigger.names
        assert rig.events(kind="team_reloaded")

        def broken():
            raise TeamError("team.yaml: line 3: invalid YAML")
        rig.wd.load_team = broken
        rig.wd.request_reload()
        rig.wd.on_timer()
        assert "tester" in rig.wd.names
        assert rig.events(kind="team_reload_failed")[0]["detail"]["error"].endswith("YAML")
    finally:
        rig.close()


# --- status tells the future -----------------------------------------------------------------

def row(**extra):
    return {"name": "code_developer", "state": "EXITED", "pid": 0, "description": "exit 1",
            "priority": 2, "uptime_seconds": 0, "cpu_percent": 0, "rss_mb": 0,
            "heartbeat_age_seconds": None, **extra}


def test_status_shows_the_coming_restart_and_the_give_up():
    now = 1_000_000.0
    states = {"code_developer": {"attempts": 2, "next_restart_at": now + 56.2, "given_up": False,
                                 "last_crash_at": now - 4, "running_since": None}}
    columns = status.restart_columns(states, 3)["code_developer"]
    assert (columns["restart_attempt"], columns["given_up_at"]) == (2, None)
    text = status.render({"now": now, "uptime_seconds": 60, "agents_running": 0,
                          "agents_total": 1, "agents": [row(**columns)]})
    assert "code_developer: BACKOFF, restart in 57s (attempt 2/3) (exit 1)" in text

    given_up_at = time.mktime((2026, 1, 2, 3, 12, 0, 0, 0, -1))
    states["code_developer"].update(attempts=3, next_restart_at=None, given_up=True,
                                    last_crash_at=given_up_at)
    columns = status.restart_columns(states, 3)["code_developer"]
    assert (columns["restart_attempt"], columns["given_up_at"]) == (None, given_up_at)
    text = status.render({"now": now, "uptime_seconds": 60, "agents_running": 0,
                          "agents_total": 1, "agents": [row(**columns)]})
    assert ("code_developer: GIVEN UP at 03:12 after 3 restarts \u2014 coffee-team restart "
            "code_developer") in text


# --- notify targets --------------------------------------------------------------------------

@pytest.mark.parametrize("target, error", [
    ({"level": "LOUD", "url": "json://h/x"}, "one of INFO, WARNING, CRITICAL"),
    ({"level": "INFO"}, "exactly one of 'url' or 'command'"),
    ({"url": "json://h", "command": ["x"]}, "exactly one of 'url' or 'command'"),
    ({"command": "notify-send hi"}, "team.notify[0].command: expected a non-empty list"),
    ({"command": []}, "team.notify[0].command: expected a non-empty list"),
    ({"url": "not a url"}, "team.notify[0].url: expected an Apprise URL"),
    ({"url": "pover://u@t?sound=siren"}, "without sound="),
    ({"url": "json://h", "retries": 3}, "team.notify[0].retries: unknown key"),
])
def test_bad_notify_targets_are_one_line(target, error):
    with pytest.raises(TeamError, match=error.replace("[", r"\[").replace("(", r"\(")):
        team_of(AGENTS, notify=[target])


def project_with(tmp_path: Path, **settings) -> Path:
    team_file = tmp_path / "data" / "team.yaml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    team_file.write_text(yaml.safe_dump({"team": settings, "agents": AGENTS}))
    return team_file


def test_an_unknown_apprise_scheme_stops_gen_config_with_exit_2(tmp_path):
    pytest.importorskip("apprise")
    team_file = project_with(tmp_path, notify=[{"url": "nosuchservice://x/y"}])
    result = CliRunner().invoke(main, ["--team", str(team_file), "gen-config"])
    assert result.exit_code == 2 and "team.notify[0].url" in result.output
    assert "'nosuchservice'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "supervisord.conf.d").exists()


class Sender:
    """A target that fails while ``down`` and records what it delivered."""

    def __init__(self):
        self.down = False
        self.delivered: list[tuple[str, str]] = []

    def __call__(self, target, notification):
        if self.down:
            return notify.Result(False, "connection refused")
        self.delivered.append((target.label, notification["title"]))
        return notify.Result(True)


@pytest.fixture
def books(tmp_path):
    clock = FakeClock(1000.0)
    queue = MessageQueue(str(tmp_path / "q.db"), agents=("a",), clock=clock)
    yield queue, clock
    queue.close()


def test_deliveries_follow_levels_retry_with_backoff_and_never_repeat(books, tmp_path):
    queue, clock = books
    queue.notify("CRITICAL", "a", "before any target", "-")  # a new target gets no history
    clock.advance(1)
    team = team_of(AGENTS, notify=[{"level": "CRITICAL", "command": ["pager"]},
                                   {"level": "INFO", "url": "json://hook/x", "name": "hook"}])
    sender = Sender()
    deliverer = notify.Deliverer(queue, lambda: team.settings.notify, lambda _: None,
                                 clock=clock, sender=sender)
    deliverer.pass_once()
    queue.notify("WARNING", "a", "stale", "-")
    queue.notify("CRITICAL", "a", "a given up", "-")
    sender.down = True
    assert deliverer.pass_once() == 0
    summary = {r["label"]: r for r in queue.delivery_summary()}
    assert (summary["hook"]["failing"], summary["pager"]["failing"]) == (2, 1)
    assert summary["hook"]["last_error"] == "connection refused"
    clock.advance(notify.FIRST_RETRY - 0.1)
    sender.down = False
    assert deliverer.pass_once() == 0  # not due yet: backoff
    clock.advance(0.2)
    assert deliverer.pass_once() == 3
    assert sorted(sender.delivered) == [("hook", "a given up"), ("hook", "stale"),
                                        ("pager", "a given up")]
    restarted = notify.Deliverer(MessageQueue(str(tmp_path / "q.db"), clock=clock),
                                 lambda: team.settings.notify, lambda _: None, clock=clock,
                                 sender=sender)
    clock.advance(10**6)
    assert restarted.pass_once() == 0 and len(sender.delivered) == 3
    restarted.queue.close()


def test_without_targets_a_round_looks_at_nothing_and_with_one_it_delivers(books):
    queue, clock = books
    looks = []
    real_check = queue.check_file
    queue.check_file = lambda: looks.append(1) or real_check()
    targets = ()
    sender = Sender()
    deliverer = notify.Deliverer(queue, lambda: targets, lambda _: None, clock=clock,
                                 sender=sender)
    queue.notify("INFO", "a", "first", "-")
    clock.advance(1)
    deliverer.round()
    assert looks == [] and sender.delivered == []  # no target: the file is not even looked at
    targets = team_of(AGENTS, notify=[{"level": "INFO", "command": ["pager"]}]).settings.notify
    deliverer.round()  # the first round of a new target plans from now: no history
    queue.notify("INFO", "a", "second", "-")
    deliverer.round()
    assert looks == [1, 1] and sender.delivered == [("pager", "second")]


def test_two_deliverers_never_send_one_row_twice(books, tmp_path):
    queue, clock = books
    team = team_of(AGENTS, notify=[{"level": "INFO", "command": ["pager"]}])
    sender = Sender()
    deliverers = [notify.Deliverer(MessageQueue(str(tmp_path / "q.db"), clock=clock),
                                   lambda: team.settings.notify, lambda _: None, clock=clock,
                                   sender=sender) for _ in range(2)]
    deliverers[0].pass_once()
    for i in range(20):
        queue.notify("INFO", "a", f"n{i}", "-")
    threads = [threading.Thread(target=d.pass_once) for d in deliverers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(title for _, title in sender.delivered) == sorted(f"n{i}" for i in range(20))
    for d in deliverers:
        d.queue.close()


@pytest.mark.slow  # starts a process
def test_a_command_target_gets_the_notification_as_json_and_its_failure_as_the_error(tmp_path):
    out = tmp_path / "got.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    note = {"notification_id": 7, "created_at": 1.0, "level": "CRITICAL", "agent": "a",
            "title": "a given up", "message": "m"}
    assert notify.send_command((sys.executable, "-c", script), note).ok
    assert json.loads(out.read_text()) == {"id": 7, "created_at": 1.0, "level": "CRITICAL",
                                           "agent": "a", "title": "a given up",
                                           "message": "m", "sound": False}
    failed = notify.send_command((sys.executable, "-c", "import sys; sys.exit('down')"), note)
    assert not failed.ok and failed.error.endswith("exited 1: down")
    assert not notify.send_command(("/nonexistent/pager",), note).ok


def test_silent_switches_are_added_where_a_service_has_one():
    assert notify.silenced("tgram://bot/chat") == "tgram://bot/chat?silent=yes"
    assert notify.silenced("pover://u@t?priority=1") == "pover://u@t?priority=1&sound=none"
    assert notify.silenced("json://h/x") == "json://h/x"


# --- the systemd unit ------------------------------------------------------------------------

@pytest.mark.slow  # starts a process
def test_service_install_print_is_a_unit_systemd_accepts(tmp_path):
    team_file = project_with(tmp_path / "my project")
    result = CliRunner().invoke(main, ["--team", str(team_file), "service", "install", "--print"])
    assert result.exit_code == 0, result.output
    unit = result.output
    assert "-n -c" in unit and "Restart=on-failure" in unit
    assert f"WorkingDirectory={tmp_path / 'my project'}" in unit
    assert f'"{Path(sys.executable).parent / "supervisord"}"' in unit
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit text was checked, not verified")
    path = tmp_path / "coffee-team-test.service"
    path.write_text(unit)
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True)
    assert verify.returncode == 0, verify.stderr
    path.write_text(unit.replace("ExecStart=\"", "ExecStart=\"/no"))
    assert subprocess.run(["systemd-analyze", "verify", str(path)],
                          capture_output=True).returncode != 0  # the check can fail


@pytest.mark.slow  # starts a process
def test_service_install_and_uninstall_a_user_unit(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    team_file = project_with(tmp_path / "proj")
    runner = CliRunner()
    installed = runner.invoke(main, ["--team", str(team_file), "service", "install", "--user"])
    assert installed.exit_code == 0, installed.output
    units = list((tmp_path / "config" / "systemd" / "user").glob("coffee-team-proj-*.service"))
    assert len(units) == 1 and "WantedBy=default.target" in units[0].read_text()
    shown = runner.invoke(main, ["--team", str(team_file), "service", "status", "--user"])
    assert f"installed: {units[0]}" in shown.output
    removed = runner.invoke(main, ["--team", str(team_file), "service", "uninstall", "--user"])
    assert removed.exit_code == 0 and not units[0].exists()


# --- shell completion and a '%' in the project path ------------------------------------------

@pytest.mark.slow  # starts a process
def test_bash_completion_script_is_served():
    done = subprocess.run([str(Path(sys.executable).parent / "coffee-team")],
                          env={"_COFFEE_TEAM_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "_coffee_team_completion" in done.stdout


def test_a_percent_in_the_project_path_is_refused_in_one_line(tmp_path):
    team_file = project_with(tmp_path / "50%off")
    runner = CliRunner()
    for args in (["gen-config"], ["start"]):
        result = runner.invoke(main, ["--team", str(team_file), *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().endswith("move or rename the directory")
        assert len(result.output.strip().splitlines()) == 1
    doctor = runner.invoke(main, ["--team", str(team_file), "doctor"])
    assert doctor.exit_code == 1 and "FAIL generated config:" in doctor.output
    assert "holds '%'" in doctor.output
