"""The LLM commands through click's CliRunner on a throwaway project (no supervisord):
``costs``, cost in ``status``'s columns, ``doctor``'s worktree lines, and gen-config refusing
an llm team whose role file or workspace cannot be used."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from click.testing import CliRunner

from coffee_team.cli import main
from coffee_team.cli.doctor import run_checks
from coffee_team.queue import MessageQueue
from coffee_team.queue.tables import SCHEMA_VERSION
from coffee_team.status import queue_columns
from tests.harness import Project

LLM = {"command": ["claude", "-p", "--output-format", "json"]}


@pytest.fixture
def proj(tmp_path):
    p = Project(tmp_path)
    p.write_team({"architect": {"llm": LLM}, "code_developer": {"llm": LLM}})
    return p


def run(proj, *args):
    result = CliRunner().invoke(main, ["--team", str(proj.team_file), *args])
    assert "Traceback" not in result.output
    return result


def spend(proj, *rows):
    with MessageQueue.from_team(proj.team) as q:
        for agent, task_type, cost, tokens_in in rows:
            q.record_usage(None, agent, task_type, {"cost_usd": cost, "tokens_in": tokens_in,
                                                     "tokens_out": 1})


def test_costs_json_adds_up_per_agent_and_in_total(proj):
    spend(proj, ("architect", "design", 0.25, 10), ("architect", "review", 0.125, 5),
          ("code_developer", "spec_created", 0.5, 100))
    data = json.loads(run(proj, "costs", "--json").output)
    groups = {g["key"]: g for g in data["groups"]}
    assert groups["architect"]["cost_usd"] == 0.375 and groups["architect"]["runs"] == 2
    assert groups["code_developer"]["tokens_in"] == 100
    assert data["total"]["cost_usd"] == sum(g["cost_usd"] for g in data["groups"]) == 0.875
    assert data["total"]["tokens_out"] == 3
    by_type = json.loads(run(proj, "costs", "--by", "type", "--since", "24h", "--json").output)
    assert [g["key"] for g in by_type["groups"]] == ["design", "review", "spec_created"]
    by_day = json.loads(run(proj, "costs", "--by", "day", "--json").output)
    assert [g["key"] for g in by_day["groups"]] == [time.strftime("%Y-%m-%d", time.gmtime())]
    text = run(proj, "costs").output
    assert "architect" in text and "$    0.3750" in text and "total" in text


@pytest.mark.parametrize("since", ["0d", "soon", "-1d", "99999d"])
def test_costs_refuse_a_bad_since(proj, since):
    spend(proj)
    result = run(proj, "costs", "--since", since)
    assert result.exit_code == 2 and "--since: expected a duration like 7d" in result.output


def test_status_columns_carry_todays_cost_and_tokens(proj):
    spend(proj, ("architect", "design", 0.25, 10))
    with MessageQueue.from_team(proj.team) as q:
        columns = queue_columns(q, proj.team)
    assert (columns["architect"]["cost_today_usd"], columns["architect"]["tokens_today"]) == \
        (0.25, 11)
    assert columns["code_developer"]["cost_today_usd"] == 0.0


@pytest.mark.slow  # starts a process
def test_gen_config_refuses_a_worktree_outside_a_git_repository(proj):
    proj.team_file.write_text(proj.team_file.read_text().replace(
        "llm:", "workspace: {worktree: true}\n    llm:", 1))
    result = run(proj, "gen-config")
    assert result.exit_code == 2
    assert "agents.architect.workspace.worktree: " in result.output
    assert "is not in a git repository" in result.output


@pytest.mark.slow  # starts a process
def test_doctor_reports_each_worktree(proj):
    proj.team_file.write_text(proj.team_file.read_text().replace(
        "llm:", "workspace: {worktree: true}\n    llm:", 1))
    subprocess.run(["git", "init", "-q"], cwd=proj.root, check=True)
    lines = {name: (ok, detail) for ok, name, detail in run_checks(str(proj.team_file))}
    ok, detail = lines["worktree of architect"]
    assert not ok and "missing (the agent creates it when it starts)" in detail


@pytest.mark.slow  # starts a process
def test_the_example_llm_team_is_the_seed_team_and_passes_the_start_checks(tmp_path):
    import shutil
    from pathlib import Path

    from coffee_team.team import load_team
    from coffee_team.llm.workspace import team_problems
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "data").mkdir()
    shutil.copy(repo / "examples/llm-team/team.yaml", tmp_path / "data/team.yaml")
    shutil.copytree(repo / "examples/llm-team/agents", tmp_path / "examples/llm-team/agents")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    team = load_team(tmp_path / "data/team.yaml")
    seed = load_team(repo / "data/team.yaml")
    assert [(a.name, a.priority, a.check_interval, a.handles) for a in team.agents] == \
        [(a.name, a.priority, a.check_interval, a.handles) for a in seed.agents]
    assert all(a.llm is not None and a.llm.preset == "claude" for a in team.agents)
    assert team_problems(team) == []


def test_a_version_5_database_gains_the_llm_tables(tmp_path):
    path = str(tmp_path / "v2.db")
    with MessageQueue(path) as q:
        for table in ("llm_usage", "budget_stop", "llm_session"):
            q.backend.execute(f"DROP TABLE {table}")
        q.backend.execute("DELETE FROM schema_version WHERE version >= 6")
        q.backend.execute("INSERT INTO schema_version (version, applied_at) VALUES (5, 0)")
        task_id = q.send("ci", "a", "t")
    with MessageQueue(path) as q:
        assert q.backend.fetchall("SELECT MAX(version) FROM schema_version") == [
            (SCHEMA_VERSION,)]
        q.record_usage(task_id, "a", "t", {"cost_usd": 0.5})
        assert q.costs(0)["total"]["cost_usd"] == 0.5 and q.get_task(task_id)["type"] == "t"


# --- resume past a budget stop ----------------------------------------------------------------

@pytest.fixture
def stopped(tmp_path):
    """architect stopped today by its budget of 1 USD (1.0 spent); the team's is 10 USD."""
    from coffee_team.clock import next_day, utc_day
    p = Project(tmp_path)
    p.write_team({"architect": {"llm": LLM, "budget": {"usd_per_day": 1.0}},
                  "code_developer": {"llm": LLM}}, budget={"usd_per_day": 10.0})
    spend(p, ("architect", "design", 1.0, 10))
    now = time.time()
    with MessageQueue.from_team(p.team) as q:
        assert q.stop_for_budget("architect", utc_day(now), next_day(now),
                                 "budget: architect's usd_per_day 1 reached: 1.0000 USD spent "
                                 "today (UTC); intake resumes at ...", ["architect"], "paused",
                                 "architect")
    return p


def state(p) -> tuple:
    from coffee_team.clock import utc_day
    from coffee_team.llm.budget import TEAM_SCOPE
    with MessageQueue.from_team(p.team) as q:
        day = utc_day(time.time())
        return (set(q.pauses()), set(q.budget_stops("architect", day, TEAM_SCOPE)),
                q.budget_allowance("architect", day))


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    for part in parts:
        assert part in result.output


def test_resume_past_a_budget_stop_says_how_far(stopped):
    result = run(stopped, "resume", "architect")
    one_line_error(result, "architect is stopped by the daily budget (budget: architect's "
                           "usd_per_day 1 reached: 1.0000 USD spent today (UTC))",
                   "--raise USD or --raise-tokens N for today, or --no-budget-today")
    assert state(stopped) == ({"architect"}, {"architect"}, (0.0, 0, False))
    result = run(stopped, "resume", "architect", "--raise", "0.5")
    assert result.exit_code == 0 and result.output == \
        "architect: resumed, today's budget raised by $0.5\n"
    assert state(stopped) == (set(), set(), (0.5, 0, False))
    assert run(stopped, "resume", "architect", "--raise", "1").exit_code == 2  # not stopped


@pytest.mark.parametrize("args, parts", [
    (["--raise", "0"], ["--raise: expected USD above 0"]),
    (["--raise", "-2"], ["--raise: expected USD above 0"]),
    (["--raise-tokens", "0"], ["--raise-tokens: expected a count above 0"]),
    (["--raise", "1", "--no-budget-today"], ["choose one"]),
    (["--raise-tokens", "1000"], ["architect's usd_per_day 1 reached: 1.0000 USD spent today "
                                  "even after this raise: raise more, or --no-budget-today"]),
])
def test_a_raise_that_cannot_work_is_refused_in_one_line(stopped, args, parts):
    one_line_error(run(stopped, "resume", "architect", *args), *parts)
    assert state(stopped)[:2] == ({"architect"}, {"architect"})  # nothing changed


def test_no_budget_today_and_json(stopped):
    result = run(stopped, "resume", "architect", "--no-budget-today", "--json")
    assert json.loads(result.output) == {"agent": "architect", "paused": False,
                                         "was_paused": True, "budget_raised": {
                                             "usd": 0.0, "tokens": 0, "unlimited": True}}
    assert state(stopped) == (set(), set(), (0.0, 0, True))


def test_a_pause_that_is_no_budget_stop_resumes_as_before(stopped):
    run(stopped, "pause", "code_developer", "--reason", "lunch")
    assert run(stopped, "resume", "code_developer").output == "code_developer: resumed\n"
    one_line_error(run(stopped, "resume", "code_developer", "--raise", "2"),
                   "code_developer is not stopped by a budget today")


def test_a_team_stop_is_raised_for_the_team(stopped):
    from coffee_team.clock import next_day, utc_day
    from coffee_team.llm.budget import TEAM_SCOPE
    spend(stopped, ("code_developer", "build", 9.5, 10))
    now, day = time.time(), utc_day(time.time())
    with MessageQueue.from_team(stopped.team) as q:
        q.stop_for_budget(TEAM_SCOPE, day, next_day(now), "budget: the team's usd_per_day 10 "
                          "reached: 10.5000 USD spent today (UTC); ...",
                          ["architect", "code_developer"], "paused", None)
    one_line_error(run(stopped, "resume", "code_developer"), "the team's usd_per_day 10")
    one_line_error(run(stopped, "resume", "code_developer", "--raise", "0.25"),
                   "the team's usd_per_day 10.25 reached: 10.5000 USD spent today even after")
    assert run(stopped, "resume", "code_developer", "--raise", "1").exit_code == 0
    with MessageQueue.from_team(stopped.team) as q:
        assert q.budget_allowance(TEAM_SCOPE, day) == (1.0, 0, False)
        assert q.budget_stops("code_developer", day, TEAM_SCOPE) == {}
        assert set(q.pauses()) == {"architect"}  # its own stop holds it still
