"""A watchdog that was away (its process SIGSTOPped, or waiting on a supervisord that does not
answer), with an injected clock: a fake supervisord, a real SQLite queue, time that moves only
when the test says so. Nothing sleeps.

Before: supervisord SIGSTOPped for longer than 2 × heartbeat_stale_after held the health
check inside getAllProcessInfo; the heartbeat read after it was placed on the clocks as read
before it (the monotonic one) and after it (the wall one), i.e. the whole pause too early, and
the next check, due at once, called the agent hung on a heartbeat 0.6 s old and restarted it.
The rule now: a look later than the cadence is a pause, logged once; its silence counts for no
agent; heartbeats are read again before any is judged (policy.unwatched, policy.unpaused).
"""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffee_team import events as kinds
from coffee_team.watchdog.policy import (HUNG, PAUSE_SLACK, BeatSeen, heartbeat_status,
                                         observe_beat, unpaused, unwatched)
from tests.clock import MONO0
from tests.watchdog_rig import Rig

HEALTH = dict(health_check_interval=30, heartbeat_stale_after=300, heartbeat_interval=30)
RUNNING = ("architect", "code_developer", "assistant")
W0, M0 = 1_700_000_000.0, 5_000.0


# --- the rule ------------------------------------------------------------------------------

def test_a_look_on_the_cadence_is_no_pause_and_the_first_look_neither():
    assert unwatched(None, M0, 30) == 0.0
    assert unwatched(M0, M0 + 30, 30) == 0.0
    assert unwatched(M0, M0 + 30 + PAUSE_SLACK, 30) == 0.0  # the boundary: on time
    assert unwatched(M0, M0 + 30 + PAUSE_SLACK + 1e-6, 30) == pytest.approx(32 + 1e-6)
    assert unwatched(M0, M0 + 700, 30) == 700.0  # the whole span, not what exceeds it
    assert unwatched(M0, M0 + 5, 1, slack=3) == 5.0


def test_unpaused_moves_the_silence_by_the_gap_and_a_change_meanwhile_to_the_resume():
    seen = BeatSeen(pid=7, stamp=W0, since=M0, read_at=M0 + 20)
    assert unpaused(seen, 0.0, M0 + 30) is seen
    after = unpaused(seen, 700.0, M0 + 730)
    assert after == BeatSeen(pid=7, stamp=W0, since=M0 + 700, read_at=M0 + 730)
    # unchanged stamp: 30 s of watched silence, not 730
    assert M0 + 730 - observe_beat(after, 7, W0, None, W0 + 730, M0 + 730, None).since == 30
    # a heartbeat written during the pause counts from the look that found it
    mid = observe_beat(after, 7, W0 + 400, None, W0 + 730, M0 + 730, None)
    assert mid.since == M0 + 730
    # one written just before that look too: nobody saw when
    assert observe_beat(after, 7, W0 + 729.5, None, W0 + 730, M0 + 730, None).since == M0 + 730
    # one written after it, from when it was written
    late = observe_beat(after, 7, W0 + 740, None, W0 + 750, M0 + 750, None)
    assert late.since == pytest.approx(M0 + 740)


@settings(max_examples=400, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.5, 30), st.booleans(), st.booleans(),
                                st.floats(33, 3600)), min_size=1, max_size=60))
def test_the_age_counted_is_the_silence_the_watchdog_watched(steps):
    """Looks every up to 30 s (health_check_interval 30), some after a pause of up to an hour;
    the agent beats between two looks or stays silent. The age the watchdog counts is exactly
    the silence it watched: a beat between two looks on the cadence counts from when it was
    written; one during a pause from the look after it; a pause adds nothing to a silence."""
    wall, mono, looked_at = W0, M0, None
    seen = observe_beat(None, 7, W0, None, wall, mono, None)
    watched = 0.0
    for passed, paused, beats, pause in steps:
        span = pause if paused else passed
        stamp = seen.stamp
        if beats:
            stamp = wall + span / 2  # written half way to the next look
        wall, mono = wall + span, mono + span
        gap = unwatched(looked_at if looked_at is not None else mono - span, mono, 30)
        assert bool(gap) == paused
        looked_at = mono
        seen = observe_beat(unpaused(seen, gap, mono), 7, stamp, None, wall, mono, None)
        if beats:
            watched = 0.0 if paused else span / 2
        elif not paused:
            watched += span
        assert mono - seen.since == pytest.approx(watched, abs=1e-6)
        assert (heartbeat_status(seen.since, mono, 300) == HUNG) == (watched > 600 + 1e-6) \
            or math.isclose(watched, 600, abs_tol=1e-6)


# --- the watchdog --------------------------------------------------------------------------

@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path, **HEALTH)
    for name in RUNNING:
        rig.rpc.set_state(name, "RUNNING")
    yield rig
    rig.close()


def beat(rig, frozen=()):
    for name in RUNNING:
        if name not in frozen:
            rig.write_heartbeat(name, rig.clock())


def agents_live(rig, seconds, frozen=()):
    """Time passes for the agents alone: each but the ``frozen`` beats every 30 s."""
    for second in range(int(seconds)):
        rig.clock.advance(1)
        if (rig.clock.monotonic() - MONO0) % 30 == 0:
            beat(rig, frozen)


def live(rig, seconds, frozen=()):
    """... and the watchdog's loop runs every second (MAX_IDLE_WAIT)."""
    for _ in range(int(seconds)):
        agents_live(rig, 1, frozen)
        rig.wd.on_timer()


def supervisord_silent_for(rig, monkeypatch, seconds, frozen=()):
    """The next getAllProcessInfo answers only after ``seconds``: supervisord SIGSTOPped
    while the watchdog runs (the call has no timeout), the agents live on meanwhile."""
    real = rig.rpc.getAllProcessInfo

    def held():
        monkeypatch.setattr(rig.rpc, "getAllProcessInfo", real)
        agents_live(rig, seconds, frozen)
        return real()
    monkeypatch.setattr(rig.rpc, "getAllProcessInfo", held)


def pauses(rig):
    return rig.events(kind=kinds.WATCHDOG_PAUSED)


def nothing_done(rig):
    assert rig.rpc.stopped() == [] and rig.rpc.started() == []
    assert rig.notifications() == []
    assert [e for e in rig.events() if e["kind"] in (kinds.HUNG, kinds.STALE)] == []


@pytest.mark.parametrize("seconds", [601, 700, 3600])
def test_a_stopped_supervisord_holding_the_health_check_is_no_hang(rig, monkeypatch, seconds):
    """The reported bug: the heartbeats are fresh all along, supervisord does not answer
    for longer than 2 × stale_after, then does; the next check is due at once."""
    live(rig, 100)
    supervisord_silent_for(rig, monkeypatch, seconds)
    live(rig, 700)
    nothing_done(rig)
    assert [e["detail"]["seconds"] for e in pauses(rig)] == [pytest.approx(seconds + 30, abs=2)]
    assert rig.stderr.getvalue().count("watchdog away for") == 1  # logged once


@pytest.mark.parametrize("seconds", [601, 3600])
def test_a_stopped_watchdog_calls_no_agent_hung_on_resuming(rig, seconds):
    """SIGSTOP of the watchdog (and supervisord: the same to it): its loop does not run."""
    live(rig, 100)
    agents_live(rig, seconds)
    live(rig, 700)
    nothing_done(rig)
    assert [e["detail"]["seconds"] for e in pauses(rig)] == [pytest.approx(seconds + 1, abs=30)]


def test_agents_silent_while_the_watchdog_was_away_are_read_again_before_judging(rig):
    """Nobody watched the agents meanwhile: even one whose heartbeat did not change is given
    its usual window from the resume, and one that beats again is fresh at once."""
    live(rig, 100)
    agents_live(rig, 3600, frozen=RUNNING)  # silent too (e.g. blocked on supervisord's pipe)
    beat(rig, frozen=("assistant",))
    rig.wd.on_timer()
    nothing_done(rig)
    live(rig, 500)  # the others beat again; assistant still silent, within its window
    nothing_done(rig)


@pytest.mark.parametrize("frozen_before", [0, 200, 500])
def test_an_agent_frozen_around_a_pause_is_hung_after_watched_silence_of_twice_stale(
        rig, monkeypatch, frozen_before):
    """SIGSTOPped ``frozen_before`` seconds before supervisord stops for an hour: found hung
    once the watchdog watched 2 × stale_after (600 s) of its silence in all, no sooner, and
    within a check (30 s) of that."""
    live(rig, 91)  # everyone beat at second 90
    live(rig, frozen_before, frozen=("code_developer",))
    supervisord_silent_for(rig, monkeypatch, 3600, frozen=("code_developer",))
    found = None
    for second in range(1, 1000):
        live(rig, 1, frozen=("code_developer",))
        if rig.rpc.stopped():
            found = second
            break
    assert rig.rpc.stopped() == ["code_developer"]
    [hung] = rig.events("code_developer", kinds.HUNG)
    assert 600 < hung["detail"]["age"] <= 600 + 30 + 1
    # watched before the pause: from its last beat (second 90) to the check that got stuck
    watched_before = hung["detail"]["age"] - found
    assert 600 - watched_before <= found <= 600 - watched_before + 31
    assert len(pauses(rig)) == 1


def test_a_hang_without_a_pause_is_found_as_before(rig):
    live(rig, 91)
    for second in range(1, 1000):
        live(rig, 1, frozen=("code_developer",))
        if rig.rpc.stopped():
            break
    assert rig.rpc.stopped() == ["code_developer"] and 600 <= second <= 630
    assert pauses(rig) == [] and "away" not in rig.stderr.getvalue()


def test_the_health_checks_keep_their_cadence_after_supervisord_answers_again(rig,
                                                                            monkeypatch):
    live(rig, 100)
    supervisord_silent_for(rig, monkeypatch, 700)
    live(rig, 120)
    calls = rig.rpc.method_calls("getAllProcessInfo")
    # at 30, 60 and 90 s, the held one at 120 s (answered 700 s later), then every 30 s again
    # (not at once: due 30 s after the answer, not after the call)
    assert len(calls) == 3 + 1 + 3
