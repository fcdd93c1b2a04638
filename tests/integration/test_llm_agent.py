"""LLM agents in-process: a real Agent, MessageQueue and LlmRunner running the fake coding CLI
(tests/fake_llm_cli.py) as a real subprocess; no supervisord. Time for budgets is a FakeClock
shared by the agent and the queue, so "the next UTC day" is one call away."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coffee_team.agent.runtime import Agent
from coffee_team.clock import next_day, utc_day
from coffee_team.queue import MessageQueue
from coffee_team.llm.workspace import Workspace, current_branch, team_problems
from tests.clock import FakeClock, T0
from tests.fast_team import temp_root, write_team

pytestmark = pytest.mark.slow  # the tests here start processes

FAKE = str(Path(__file__).resolve().parents[1] / "fake_llm_cli.py")


def fake_cli(log: Path, *options: str) -> list[str]:
    return [sys.executable, FAKE, "--log", str(log), *options]


def llm_agent(log: Path, *options: str, **llm) -> dict:
    return {"check_interval": 3600, "llm": {"command": fake_cli(log, *options), **llm}}


class Project:
    """A project root with a team of agents; ``agents(log)`` builds them, so each CLI
    appends its runs to this project's ``cli.jsonl``."""

    def __init__(self, root: Path, agents, start: bool = True, **team):
        self.root = root
        self.log = root / "cli.jsonl"
        self.clock = FakeClock(T0)
        self.team = write_team(root, agents(self.log), **team)
        self.queue = MessageQueue.from_team(self.team, clock=self.clock)
        self.agents: dict[str, Agent] = {}
        if start:
            self.start()

    def start(self) -> None:
        self.agents = {spec.name: self.agent(spec.name) for spec in self.team.agents}

    def agent(self, name: str) -> Agent:
        """A new Agent (as after a restart), attached as run_agent attaches it."""
        agent = Agent(self.team, name, queue=self.queue, clock=self.clock,
                      mono=self.clock.monotonic)
        if agent.spec.llm is not None:
            agent.runner.attach(self.queue, agent.durable, self.clock)
        return agent

    def send(self, recipient: str, content=None, type: str = "job") -> int:
        return self.queue.send("ci", recipient, type, content)

    def drain(self, name: str) -> int:
        """What the agent loop does until it finds nothing: budget check, claim, process."""
        agent, done = self.agents[name], 0
        while True:
            agent.before_claim()
            tasks = self.queue.claim(name)
            if not tasks:
                return done
            agent.process(tasks[0])
            done += 1

    def runs(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def task(self, task_id: int) -> dict:
        return self.queue.get_task(task_id)


@pytest.fixture
def project():
    made = []
    with temp_root() as root:
        def make(agents, start: bool = True, **team) -> Project:
            made.append(Project(root, agents, start, **team))
            return made[-1]
        yield make
        for p in made:
            p.queue.close()


def one(name: str = "architect", *options: str, **llm):
    """``agents`` for a project of one llm agent."""
    return lambda log: {name: llm_agent(log, *options, **llm)}


def test_the_prompt_goes_on_stdin_with_the_role_text_and_never_into_argv(project, tmp_path):
    role = tmp_path / "role.md"
    role.write_text("You are the architect.\n")
    p = project(one("architect", "--cost", "0.125", system_prompt_file=str(role),
                    prompt="Design ${content.spec_id}: ${content}"))
    secret = "SPEC-9 --dangerous $(rm -rf /) `id`"
    task_id = p.send("architect", {"spec_id": "SPEC-9", "note": secret})
    assert p.drain("architect") == 1
    [run] = p.runs()
    assert run["prompt"].startswith("You are the architect.\n\nDesign SPEC-9: {")
    assert secret in run["prompt"]
    assert not any("SPEC-9" in arg or "rm -rf" in arg for arg in run["argv"])
    done = p.task(task_id)
    assert done["status"] == "completed"
    assert done["result"]["text"].startswith("Done: ")
    assert done["result"]["usage"] == {"cost_usd": 0.125, "tokens_in": 100, "tokens_out": 50,
                                       "cache_read": 0, "cache_write": 0}
    assert p.queue.costs(0, "agent")["total"]["cost_usd"] == 0.125


def test_prompt_via_arg_is_the_last_argument_and_never_an_option(project):
    p = project(one("architect", "--prompt-via", "arg", prompt_via="arg", prompt="${content}"))
    p.send("architect", "--resume evil and more")
    assert p.drain("architect") == 1
    [run] = p.runs()
    assert run["argv"][-1] == " --resume evil and more" and run["resumed"] is None
    assert run["prompt"] == " --resume evil and more"


def test_session_keep_resumes_the_previous_session_also_after_a_restart(project):
    p = project(one("architect", session="keep"))
    p.send("architect")
    p.send("architect")
    assert p.drain("architect") == 2
    first, second = p.runs()
    assert first["resumed"] is None and second["resumed"] is not None
    assert second["argv"][-2:] == ["--resume", second["resumed"]]
    p.agents["architect"] = p.agent("architect")  # a restarted agent reads it back
    p.send("architect")
    p.drain("architect")
    assert p.runs()[-1]["resumed"] == second["resumed"]


def test_a_session_key_resumes_each_specs_own_session_and_others_start_fresh(project):
    p = project(one("architect", session="keep", session_key="${content.spec_id}"))
    for content in ({"spec_id": "SPEC-1"}, {"spec_id": "SPEC-3"}, {"note": "unrelated"},
                    {"spec_id": "SPEC-1"}):
        p.send("architect", content)
    assert p.drain("architect") == 4
    one_a, three, unrelated, one_b = p.runs()
    assert (one_a["resumed"], three["resumed"], unrelated["resumed"]) == (None, None, None)
    assert "SPEC-1" in one_b["prompt"] and one_b["resumed"] is not None
    p.agents["architect"] = p.agent("architect")  # a restarted agent reads them back
    p.send("architect", {"spec_id": "SPEC-3"})
    p.send("architect", {"note": "unrelated again"})
    p.drain("architect")
    three_b, unrelated_b = p.runs()[-2:]
    assert three_b["resumed"] is not None and three_b["resumed"] != one_b["resumed"]
    assert unrelated_b["resumed"] is None
    assert p.queue.agent_session("architect", "SPEC-3") == three_b["resumed"]
    assert p.queue.agent_session("architect") is None  # the unkeyed session is not used


def test_follow_ups_in_a_fenced_json_block_are_sent_with_the_completion(project):
    p = project(lambda log: {
        "architect": {**llm_agent(log, "--send", "spec_created"), "handles": ["design"]},
        "code_developer": {**llm_agent(log), "handles": ["spec_created"]}})
    task_id = p.send("architect", {"spec_id": "SPEC-3"}, type="design")
    p.drain("architect")
    assert "send" not in p.task(task_id)["result"]
    [follow_up] = p.queue.list_tasks(agent="code_developer")
    assert (follow_up["sender"], follow_up["type"], follow_up["content"]) == \
        ("architect", "spec_created", {"spec_id": "SPEC-3"})


def test_a_follow_up_nobody_handles_is_recorded_and_notified_once_the_good_one_sent(project):
    p = project(lambda log: {
        "architect": {**llm_agent(log, "--send", "spec_created", "--send", "nobody_handles"),
                      "handles": ["design"]},
        "code_developer": {**llm_agent(log), "handles": ["spec_created"]}})
    task_id = p.send("architect", {"spec_id": "SPEC-4"}, type="design")
    p.drain("architect")
    task = p.task(task_id)
    assert task["status"] == "completed" and task["attempts"] == 1
    [undelivered] = task["result"]["undelivered"]
    assert undelivered["follow_up"]["type"] == "nobody_handles"
    assert undelivered["error"].startswith("no agent handles task type 'nobody_handles'")
    assert [t["type"] for t in p.queue.list_tasks(agent="code_developer")] == ["spec_created"]
    [note] = p.queue.notifications()
    assert (note["level"], note["agent"]) == ("WARNING", "architect")
    assert note["title"] == f"architect: 1 follow-up of task #{task_id} not sent"


@pytest.mark.parametrize("trouble, error", [
    ("FAKE-GARBAGE", "expected a JSON result, got 'this is not JSON at all'"),
    ("FAKE-FAIL", "exited with 1: fake: something broke"),
    ("FAKE-ERROR", "reported an error: 'the model could not do it'"),
])
def test_a_failed_or_unreadable_run_fails_the_task_and_the_agent_goes_on(project, trouble, error):
    p = project(one())
    bad = p.send("architect", trouble)
    good = p.send("architect", "fine")
    assert p.drain("architect") == 2
    assert p.task(bad)["status"] == "failed" and error in p.task(bad)["error"]
    assert p.task(good)["status"] == "completed"


def test_a_missing_template_field_fails_the_task_without_running_the_cli(project):
    p = project(one(prompt="Implement ${content.spec_id}"))
    task_id = p.send("architect", {"other": 1})
    p.drain("architect")
    assert p.task(task_id)["error"] == ("prompt template: ${content.spec_id}: the task's "
                                        "content has no field 'spec_id'")
    assert p.runs() == []


def test_errors_no_retry_can_fix_are_not_retried_and_the_others_are(project):
    p = project(one(prompt="${content.job}: ${content.spec_id}"),
                retry={"attempts": 3, "backoff": 1})
    missing = p.send("architect", {"job": "x"})                  # the template needs spec_id
    garbage = p.send("architect", {"job": "FAKE-GARBAGE", "spec_id": 1})  # exit 0, no JSON
    broken = p.send("architect", {"job": "FAKE-FAIL", "spec_id": 2})      # exit 1: may pass
    for _ in range(3):
        p.drain("architect")
        p.clock.advance(10)
    assert [(p.task(t)["status"], p.task(t)["failures"]) for t in (missing, garbage, broken)] \
        == [("failed", 1), ("failed", 1), ("failed", 3)]
    assert len(p.runs()) == 1 + 3


def test_a_rate_limit_defers_the_task_to_the_stated_reset_without_using_an_attempt(project):
    p = project(one(), retry={"attempts": 2, "backoff": 1})
    reset = int(T0) + 3600
    task_id = p.send("architect", f"FAKE-RATELIMIT={reset}")
    p.drain("architect")
    task = p.task(task_id)
    assert (task["status"], task["run_after"], task["attempts"], task["failures"]) == \
        ("pending", reset, 0, 0)
    assert task["errors"] == [] and "rate limited" in task["error"]
    assert p.queue.pauses()["architect"]["paused_until"] == reset
    assert p.queue.claim("architect") == []  # paused, and the task is not due
    p.clock.set(reset)
    assert [t.id for t in p.queue.claim("architect")] == [task_id]
    usage = p.queue.costs(0, "agent")["total"]
    assert usage["runs"] == 1


def test_agents_on_one_account_pause_together_until_the_stated_reset(project):
    p = project(lambda log: {name: llm_agent(log) for name in (
        "architect", "code_developer", "tester", "designer")}
        | {"reviewer": {**llm_agent(log), "rate_limit_group": "other"}})
    reset = int(T0) + 3600
    p.queue.pause_agent("code_developer", "short", until=T0 + 60)      # lengthened
    p.queue.pause_agent("tester", "a person's pause")                  # until resumed: kept
    p.queue.pause_agent("designer", "budget", until=reset + 7200)      # longer: kept
    limited = p.send("architect", f"FAKE-RATELIMIT={reset}")
    assert p.drain("architect") == 1
    pauses = p.queue.pauses()
    assert {name: pause["paused_until"] for name, pause in pauses.items()} == {
        "architect": reset, "code_developer": reset, "tester": None, "designer": reset + 7200}
    assert pauses["code_developer"]["reason"].startswith("architect rate limited: retrying")
    assert "group python (code_developer, tester, designer) pauses too" in \
        pauses["code_developer"]["reason"]
    p.queue.cancel_task(limited)
    followers = {name: p.send(name) for name in ("architect", "code_developer", "reviewer")}
    assert p.drain("reviewer") == 1  # another group (account): goes on
    assert p.drain("architect") == 0 and p.drain("code_developer") == 0
    p.clock.set(reset - 1)
    assert p.drain("code_developer") == 0
    p.clock.set(reset)  # the stated reset: the group works again by itself
    assert p.drain("architect") == 1 and p.drain("code_developer") == 1
    assert all(p.task(t)["status"] == "completed" for t in followers.values())
    assert len(p.runs()) == 1 + 3


def test_a_rate_limit_without_a_reset_time_backs_off_a_minute_then_two(project):
    p = project(one())
    task_id = p.send("architect", "FAKE-RATELIMIT")
    p.drain("architect")
    assert p.task(task_id)["run_after"] == T0 + 60
    p.clock.set(T0 + 60)
    p.drain("architect")
    assert p.task(task_id)["run_after"] == T0 + 60 + 120
    assert p.task(task_id)["attempts"] == 0


def test_a_budget_of_one_dollar_completes_exactly_four_quarter_dollar_tasks(project):
    p = project(lambda log: {"architect": {**llm_agent(log, "--cost", "0.25"),
                                           "budget": {"usd_per_day": 1.0}}})
    ids = [p.send("architect", f"job {i}") for i in range(7)]
    assert p.drain("architect") == 4
    assert [p.task(i)["status"] for i in ids] == ["completed"] * 4 + ["pending"] * 3
    [note] = p.queue.notifications()
    assert (note["level"], note["agent"], note["sound"]) == ("CRITICAL", "architect", False)
    assert "usd_per_day 1 reached: 1.0000 USD spent" in note["message"]
    assert p.queue.pauses()["architect"]["paused_until"] == next_day(T0)
    assert p.drain("architect") == 0 and len(p.queue.notifications()) == 1
    # a plain resume does not lift a budget stop: paused again, no second notification
    assert p.queue.resume_agent("architect")
    assert p.drain("architect") == 0 and len(p.queue.notifications()) == 1
    assert "architect" in p.queue.pauses()
    # a raise for today (resume --raise 0.5): two more, then a stop of its own
    day = utc_day(T0)
    assert p.queue.lift_budget_stop("architect", ["architect"], day, usd=0.5)
    p.agents["architect"] = p.agent("architect")  # also after a restart
    assert p.drain("architect") == 2
    notes = p.queue.notifications()
    assert len(notes) == 2 and "usd_per_day 1.5 reached: 1.5000 USD" in notes[-1]["message"]
    # no budget today (resume --no-budget-today): the rest of the day goes on
    p.queue.lift_budget_stop("architect", ["architect"], day, unlimited=True)
    assert p.drain("architect") == 1 and len(p.queue.notifications()) == 2


def test_the_next_utc_day_lifts_a_budget_stop_by_itself(project):
    p = project(lambda log: {"architect": {**llm_agent(log, "--cost", "0.5"),
                                           "budget": {"usd_per_day": 1.0}}})
    ids = [p.send("architect") for _ in range(5)]
    assert p.drain("architect") == 2
    p.clock.set(next_day(T0) + 1)
    assert p.drain("architect") == 2  # a new day, a new budget (and one more stop)
    assert len(p.queue.notifications()) == 2
    assert [p.task(i)["status"] for i in ids].count("completed") == 4


def test_a_team_token_budget_pauses_every_llm_agent_with_one_notification(project):
    p = project(lambda log: {"architect": llm_agent(log, "--tokens-in", "60",
                                                    "--tokens-out", "40"),
                             "code_developer": llm_agent(log)},
                budget={"tokens_per_day": 250})
    for _ in range(4):
        p.send("architect")
        p.send("code_developer")
    assert p.drain("architect") == 3        # 100 tokens each: the third reaches 250
    assert p.drain("code_developer") == 0   # the team's budget is everyone's
    assert set(p.queue.pauses()) == {"architect", "code_developer"}
    [note] = p.queue.notifications()
    assert note["agent"] is None and note["title"] == "the team paused: daily budget reached"


def test_a_periodic_run_without_periodic_prompt_calls_no_model(project):
    p = project(one())
    p.agents["architect"].periodic()
    assert p.runs() == [] and p.agents["architect"].counts["periodic_runs"] == 1


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def init_repo(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty",
        "-m", "start")


def test_two_agents_work_in_two_worktrees_on_their_own_branches(project):
    worktree = {"workspace": {"worktree": True}}
    p = project(lambda log: {"architect": {**llm_agent(log), **worktree},
                             "code_developer": {**llm_agent(log), **worktree}}, start=False)
    init_repo(p.root)  # the project is a repository before the agents start
    p.start()
    p.agents["architect"] = p.agent("architect")  # a restart finds its worktree again
    for name in ("architect", "code_developer"):
        p.send(name, f"FAKE-TOUCH={name}.txt")
        p.send(name, "look around")
        assert p.drain(name) == 2
    runs = p.runs()
    by_agent = {Path(r["cwd"]).name: r for r in runs if "look around" in r["prompt"]}
    assert by_agent["architect"]["branch"] == "agents/architect"
    assert by_agent["code_developer"]["branch"] == "agents/code_developer"
    assert "architect.txt" in by_agent["architect"]["files"]
    assert "code_developer.txt" not in by_agent["architect"]["files"]
    assert "architect.txt" not in by_agent["code_developer"]["files"]
    health = Workspace.of(p.team, p.team.agent("architect")).health()
    assert health == (True, f"{p.root}/data/worktrees/architect on agents/architect, "
                            f"uncommitted: architect.txt")


def test_a_stopped_runs_edits_are_set_aside_before_the_next_run_and_an_answers_kept(project):
    p = project(lambda log: {"architect": {
        **llm_agent(log), "workspace": {"worktree": True}, "timeout_seconds": 1.5,
        "retry": {"attempts": 2, "backoff": 1, "on": ["exited with 1"]}}}, start=False)
    init_repo(p.root)
    p.start()
    tree = p.root / "data/worktrees/architect"
    killed = p.send("architect", "FAKE-TOUCH=half.txt FAKE-SLEEP=30")  # killed by the timeout
    failed = p.send("architect", "FAKE-TOUCH=broken.txt FAKE-FAIL")     # exits 1, retried
    p.drain("architect")
    p.clock.advance(10)
    kept = p.send("architect", "FAKE-TOUCH=kept.txt")  # answers: its edit is its work
    looked = p.send("architect", "look around")
    p.drain("architect")
    first, retried = [r for r in p.runs() if "broken" in r["prompt"]]
    assert "half.txt" not in first["files"]
    assert "broken.txt" not in retried["files"]  # a retried run starts from a clean worktree
    look = next(r for r in p.runs() if "look around" in r["prompt"])
    assert "kept.txt" in look["files"] and "broken.txt" not in look["files"]
    stashes = git(tree, "stash", "list", "--format=%gs").splitlines()
    assert [s.split("coffee-team: architect: ")[1].split(" (")[0] for s in stashes] == [
        f"task #{failed} attempt 2 stopped mid-run", f"task #{failed} attempt 1 stopped mid-run",
        f"task #{killed} attempt 1 stopped mid-run"]
    assert stashes[2].endswith(f"set aside before task #{failed}")
    shown = git(tree, "show", "--name-only", "--format=", "stash@{2}^3").split()
    assert shown == ["half.txt"]  # the untracked file is kept in the stash, not lost
    assert (p.task(failed)["status"], p.task(failed)["failures"]) == ("failed", 2)
    aside = p.task(kept)["result"]["set_aside"]
    assert (aside["files"], aside["left_by"]["task_id"]) == (["broken.txt"], failed)
    assert aside["stash"] == git(tree, "rev-parse", "stash@{0}").strip()
    assert "set_aside" not in p.task(looked)["result"]
    events = [e["detail"] for e in p.queue.events() if e["kind"] == "set_aside"]
    assert [(e["task_id"], e["before_task"]) for e in events] == [
        (killed, failed), (failed, failed), (failed, kept)]
    assert git(tree, "status", "--porcelain") == "?? kept.txt\n"


def test_edits_that_cannot_be_set_aside_keep_the_task_from_running_on_them(project):
    p = project(lambda log: {"architect": {**llm_agent(log), "workspace": {"worktree": True}}},
                start=False)
    init_repo(p.root)
    p.start()
    workspace = p.agents["architect"].runner.workspace
    workspace.begin_run({"id": 7, "type": "job", "attempts": 1})  # then killed, mid-commit:
    (workspace.directory / "half.txt").write_text("x")
    lock = p.root / ".git/worktrees/architect/index.lock"
    lock.write_text("")
    task_id = p.send("architect")
    p.drain("architect")
    error = p.task(task_id)["error"]
    assert error.startswith(f"worktree {workspace.directory}: cannot set aside the changes "
                            f"task #7 left uncommitted (git stash: ")
    assert "index.lock" in error and p.runs() == []
    lock.unlink()
    p.queue.retry_task(task_id)
    p.drain("architect")
    assert p.task(task_id)["result"]["set_aside"]["files"] == ["half.txt"]


def test_a_task_never_runs_in_a_checkout_on_another_branch(project):
    p = project(lambda log: {"architect": {**llm_agent(log), "workspace": {"worktree": True}}},
                start=False)
    init_repo(p.root)
    p.start()
    git(p.root / "data/worktrees/architect", "checkout", "-q", "-b", "elsewhere")
    task_id = p.send("architect")
    p.drain("architect")
    assert "is on elsewhere, not agents/architect" in p.task(task_id)["error"]
    assert p.runs() == []
    ok, detail = Workspace.of(p.team, p.team.agent("architect")).health()
    assert not ok and "is on elsewhere, expected agents/architect" in detail


def test_require_branch_holds_for_an_agent_in_the_project_checkout(project):
    p = project(one(), require_branch="roadmap")
    init_repo(p.root)
    task_id = p.send("architect")
    p.drain("architect")
    assert "is on main, not roadmap" in p.task(task_id)["error"] and p.runs() == []
    git(p.root, "checkout", "-q", "-b", "roadmap")
    assert current_branch(p.root / "data") == "roadmap"
    p.send("architect")
    assert p.drain("architect") == 1 and len(p.runs()) == 1


def test_start_time_problems_name_the_key_path(project):
    p = project(lambda log: {
        "architect": {**llm_agent(log, system_prompt_file="agents/missing.md"),
                      "workspace": {"worktree": True}},
        "code_developer": {**llm_agent(log), "workspace": {"dir": "no/such/dir"}}}, start=False)
    problems = team_problems(p.team)
    source = p.team.path
    assert problems == [
        f"{source}: agents.architect.llm.system_prompt_file: {p.root}/agents/missing.md "
        f"is not a readable file",
        f"{source}: agents.architect.workspace.worktree: {p.root} is not in a git repository "
        f"(worktree: true makes a git worktree of the project's repository)",
        f"{source}: agents.code_developer.workspace.dir: {p.root}/no/such/dir is not a directory"]
