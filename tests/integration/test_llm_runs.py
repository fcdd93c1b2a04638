"""LLM runs as they go, in-process: a real Agent, MessageQueue and LlmRunner running the fake
Claude Code (tests/fake_llm_cli.py, stream-json) or fake codex (tests/fake_codex_cli.py) as a
real subprocess; no supervisord. Each event is a tagged log line and the agent's current
step; a run's spend is recorded however it ends; a budget crossed mid-run stops it at the
next event."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from coffee_team.clock import next_day
from tests.clock import T0
from tests.integration.test_llm_agent import FAKE, project  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow  # the tests here start processes

STREAM = ["-p", "--output-format", "stream-json", "--verbose"]
CODEX = str(Path(__file__).resolve().parents[1] / "fake_codex_cli.py")


class Sink:
    def __init__(self):
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += bytes(data)

    @property
    def lines(self) -> list[str]:
        return self.data.decode().splitlines()


def streaming(*options: str, **agent) -> callable:
    llm = agent.pop("llm", {})
    return lambda log: {"architect": {"check_interval": 3600, **agent, "llm": {
        "command": [sys.executable, FAKE, "--log", str(log), *STREAM, *options], **llm}}}


def watch(p, name: str = "architect") -> tuple[Sink, list[str]]:
    """The agent's log lines (its runner's sink) and every step it showed."""
    agent, sink, steps = p.agents[name], Sink(), []
    agent.runner.sink = sink
    touch = agent.activity.touch

    def recording(message=None):
        if message is not None:
            steps.append(message)
        touch(message)
    agent.activity.touch = recording
    return sink, steps


def usage_rows(p) -> list[tuple]:
    return [(r[0], bool(r[1]), r[2], r[3], r[4]) for r in p.queue.backend.fetchall(
        "SELECT outcome, estimated, cost_usd, tokens_in, tokens_out FROM llm_usage ORDER BY id")]


@pytest.fixture
def alarm_restored():
    saved = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, saved)


def test_each_event_is_a_tagged_log_line_and_the_current_step(project):
    p = project(streaming("--steps", "4", "--cost", "0.25"))
    sink, steps = watch(p)
    task_id = p.send("architect", "add a --version flag")
    assert p.drain("architect") == 1
    task = p.task(task_id)
    assert task["status"] == "completed" and task["result"]["text"].startswith("Done: ")
    tagged = [line[len(f"[#{task_id}] "):] for line in sink.lines
              if line.startswith(f"[#{task_id}] ")]
    assert len(tagged) == len(sink.lines)
    assert tagged[0].startswith("session fake-") and tagged[0].endswith("started (claude-fake)")
    for line in ("says: Step 1: Read next. (+1 lines)", "Read README.md", "  -> ok",
                 "Edit src/cli.py", "Bash: pytest -q", "fake: reading the task",
                 "done: success, 4 turns, $0.2500, 150 tokens"):
        assert line in tagged
    assert not any(line.lstrip().startswith("{") for line in tagged)  # no raw JSON
    assert steps[:4] == ["starting", "Step 1: Read next.", "Read README.md", "Step 2: Edit next."]
    assert "Bash: pytest -q" in steps and steps[-1].startswith("Done: ")
    assert usage_rows(p) == [("ok", False, 0.25, 100, 50)]  # the CLI's own totals


def test_a_run_stopped_by_its_timeout_records_what_it_had_spent(project, alarm_restored):
    p = project(streaming("--steps", "40", "--pace", "0.05", timeout_seconds=1.5))
    task_id = p.send("architect")
    p.drain("architect")
    assert p.task(task_id)["error"] == "timed out after 1.5s"
    [(outcome, estimated, cost, tokens_in, tokens_out)] = usage_rows(p)
    assert (outcome, estimated, cost) == ("timeout", True, 0.0)  # no prices: tokens only
    assert 0 < tokens_in < 100 and 0 < tokens_out < 50  # the events seen before the stop


def test_with_prices_a_cut_off_runs_cost_is_estimated(project, alarm_restored):
    prices = {"input": 1000.0, "output": 2000.0}
    p = project(streaming("--steps", "40", "--pace", "0.05", llm={"prices": prices},
                          timeout_seconds=1.5))
    p.send("architect")
    p.drain("architect")
    [(outcome, estimated, cost, tokens_in, tokens_out)] = usage_rows(p)
    assert outcome == "timeout" and estimated
    assert cost == pytest.approx((tokens_in * 1000 + tokens_out * 2000) / 1e6)


def test_a_run_cut_off_by_a_kill_is_settled_as_killed_at_the_next_start(project):
    p = project(streaming())
    row = p.queue.begin_usage(7, "architect", "job")  # what a kill -9 mid-run leaves
    p.queue.update_usage(row, {"tokens_in": 40, "tokens_out": 4})
    p.agents["architect"] = p.agent("architect")  # the agent starts again
    assert usage_rows(p) == [("killed", True, 0.0, 40, 4)]


def test_a_token_budget_crossed_mid_run_stops_it_at_the_next_event(project):
    # 150 tokens over 4 turns (37, 37, 37, 39): the third turn takes the day past 100
    p = project(streaming("--steps", "4"), budget={"tokens_per_day": 100})
    sink, steps = watch(p)
    task_id = p.send("architect")
    later = p.send("architect")
    assert p.drain("architect") == 1
    task = p.task(task_id)
    assert (task["status"], task["attempts"], task["failures"]) == ("pending", 0, 0)
    assert "stopped by the budget" in task["error"]
    assert p.task(later)["status"] == "pending"
    assert usage_rows(p) == [("over_budget", True, 0.0, 75, 36)]  # three turns' tokens
    assert not any("done:" in line for line in sink.lines)  # stopped before its end
    assert "Step 3: Bash next." in steps  # the event that crossed: nothing came after it
    assert "Bash: pytest -q" not in steps
    [note] = p.queue.notifications()
    assert note["level"] == "CRITICAL" and "tokens_per_day 100 reached: 111 tokens" in \
        note["message"]
    assert p.queue.pauses()["architect"]["paused_until"] == next_day(T0)
    assert p.drain("architect") == 0 and len(p.queue.notifications()) == 1


@pytest.mark.parametrize("prices, stops_mid_run", [(None, False),
                                                   ({"input": 2000.0, "output": 2000.0}, True)])
def test_dollars_stop_a_run_mid_way_only_when_priced(project, prices, stops_mid_run):
    # without prices stream-json states no running cost: the run ends, the next claim stops
    llm = {"prices": prices} if prices else {}
    p = project(streaming("--steps", "4", "--cost", "0.4", "--max-budget-usd", "99", llm=llm),
                budget={"usd_per_day": 0.25})
    task_id = p.send("architect")
    p.drain("architect")
    [(outcome, estimated, cost, _, _)] = usage_rows(p)
    if stops_mid_run:  # 2000 USD per million: 0.074 a turn, the 4th turn past 0.25
        assert (p.task(task_id)["status"], outcome, estimated) == ("pending", "over_budget", True)
        assert cost == pytest.approx(0.3)
    else:
        assert (p.task(task_id)["status"], outcome, estimated, cost) == ("completed", "ok",
                                                                         False, 0.4)
    assert len(p.queue.notifications()) == 1 and "architect" in p.queue.pauses()


def test_claude_gets_the_usd_left_as_its_own_cap_and_stopping_there_is_a_budget_stop(project):
    p = project(streaming("--steps", "5", "--cost", "1.0"), budget={"usd_per_day": 2.0})
    p.queue.record_usage(None, "architect", "job", {"cost_usd": 1.5})  # spent earlier today
    task_id = p.send("architect")
    p.drain("architect")
    [run] = p.runs()
    cap = run["argv"].index("--max-budget-usd")
    assert run["argv"][cap + 1] == "0.5000"
    task = p.task(task_id)  # the fake stopped between turns at its cap (0.6 after 3 turns)
    assert (task["status"], task["attempts"]) == ("pending", 0)
    assert usage_rows(p)[-1] == ("over_budget", False, pytest.approx(0.6), 60, 30)
    [note] = p.queue.notifications()
    assert "usd_per_day 2 reached: 2.1000 USD spent (" in note["message"]
    assert "stopped at its own cap" in note["message"]


def test_a_cap_in_the_command_is_left_alone(project):
    p = project(streaming("--max-budget-usd", "7"), budget={"usd_per_day": 2.0})
    p.send("architect")
    p.drain("architect")
    [run] = p.runs()
    assert run["argv"].count("--max-budget-usd") == 1 and "7" in run["argv"]


def test_codex_events_are_steps_and_its_tokens_are_priced(project):
    p = project(lambda log: {"architect": {"check_interval": 3600, "llm": {
        "command": [sys.executable, CODEX, "exec", "--json", "--steps", "2"],
        "preset": "codex", "prompt_via": "arg", "prices": {"input": 1.0, "output": 10.0,
                                                           "cache_read": 0.1}}}})
    sink, steps = watch(p)
    task_id = p.send("architect", "tidy up")
    assert p.drain("architect") == 1
    assert p.task(task_id)["result"]["text"].startswith("Done: ")
    tagged = [line.split("] ", 1)[1] for line in sink.lines]
    assert tagged[:4] == [tagged[0], "turn started", "thinking: **Reading the task**",
                          "Run: bash -lc 'make step0'"]
    assert "Edit src/cli.py" in steps and "  -> exit 0" in tagged
    assert usage_rows(p) == [("ok", True, pytest.approx((1000 + 500 + 80) / 1e6), 1000, 50)]
