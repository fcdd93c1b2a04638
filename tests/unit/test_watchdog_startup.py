"""The watchdog waits out a team file or database it cannot open (startup.open_patiently),
answering supervisord's events meanwhile, instead of crash-looping. No processes, no sleeping:
the protocol reads injected streams and the clock moves when read."""
from __future__ import annotations

import io
import itertools

import pytest

from coffee_team import retry
from coffee_team.watchdog.protocol import ListenerProtocol
from coffee_team.watchdog.startup import open_patiently
from tests import fakes


def stepping_clock(step: float = 0.6):
    """Each read moves time on: with 1 s waits, one event is read per wait."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


def protocol_over(stdin: str):
    out, err = io.StringIO(), io.StringIO()
    return ListenerProtocol(io.StringIO(stdin), out, err, clock=lambda: fakes.T0), out, err


def failing(times: int, exc: Exception, value="opened"):
    calls = []

    def open_all():
        calls.append(1)
        if len(calls) <= times:
            raise exc
        return value
    return open_all, calls


def test_opens_at_once_without_a_word_to_supervisord():
    protocol, out, err = protocol_over("")
    opened = open_patiently(lambda: "queue", protocol, clock=stepping_clock())
    assert (opened.value, opened.waited, opened.supervisor_running) == ("queue", False, False)
    assert out.getvalue() == "" and err.getvalue() == ""


def test_answers_events_while_it_waits_and_remembers_supervisor_running():
    stdin = fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING") + \
        fakes.process_event_text("PROCESS_STATE_EXITED", "architect", "RUNNING", serial=2)
    protocol, out, err = protocol_over(stdin)
    open_all, calls = failing(2, RuntimeError("file is not a database"))
    opened = open_patiently(open_all, protocol, clock=stepping_clock(), first=1.0, cap=1.0)
    assert opened is not None and opened.value == "opened" and opened.waited and opened.supervisor_running
    assert len(calls) == 3
    # READY once, then each event acknowledged and READY again: never two outstanding READYs.
    assert out.getvalue() == "READY\n" + "RESULT 2\nOKREADY\n" * 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines  # the same problem twice is one line
    assert "cannot start yet: RuntimeError: file is not a database" in lines[0]


def test_a_new_problem_is_logged_again():
    problems = iter([ValueError("schema from a newer version"), OSError("connection refused")])

    def open_all():
        problem = next(problems, None)
        if problem:
            raise problem
        return "ok"
    protocol, _, err = protocol_over(fakes.event_text("SUPERVISOR_STATE_CHANGE_RUNNING") * 2)
    opened = open_patiently(open_all, protocol, clock=stepping_clock(), first=1.0, cap=1.0)
    assert opened is not None and opened.value == "ok"
    assert [("newer version" in l, "refused" in l) for l in err.getvalue().splitlines()] == [
        (True, False), (False, True)]


def test_supervisord_closing_stdin_ends_the_wait():
    protocol, out, _ = protocol_over("")
    open_all, calls = failing(10**6, RuntimeError("down"))
    assert open_patiently(open_all, protocol, clock=stepping_clock()) is None
    assert len(calls) == 1 and out.getvalue() == "READY\n"


@pytest.mark.parametrize("first, cap, expected", [
    (1.0, 30.0, [1, 2, 4, 8, 16, 30, 30]),
    (0.1, 5.0, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]),
    (5.0, 1.0, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
])
def test_backoff_schedule(first, cap, expected):
    assert list(itertools.islice(retry.delays(first, cap), 7)) == pytest.approx(expected)
