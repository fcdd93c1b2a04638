"""What a start polls while it waits for the team to run (ops/starting.StatePoll): a few
programs per poll, in launch order, never every program supervisord has on every poll."""
from __future__ import annotations

from coffee_team import client
from coffee_team.ops.starting import StatePoll


class Supervisord:
    """getAllProcessInfo and system.multicall of getProcessInfo over a dict of states; each
    call counts the infos it answered with (what supervisord's one thread pays for)."""

    def __init__(self, states: dict[str, str]):
        self.states = states
        self.answered: list[tuple[str, int]] = []

    def __call__(self, method: str, *args):
        if method == "supervisor.getAllProcessInfo":
            self.answered.append((method, len(self.states)))
            return [self.info(n) for n in self.states]
        assert method == "system.multicall"
        (calls,) = args
        assert {c["methodName"] for c in calls} == {"supervisor.getProcessInfo"}
        self.answered.append((method, len(calls)))
        return [self.info(c["params"][0]) if c["params"][0] in self.states
                else {"faultCode": 10, "faultString": "BAD_NAME"} for c in calls]

    def info(self, name: str) -> dict:
        return {"name": name, "statename": self.states[name], "spawnerr": ""}


def boot(names, poll, sup, up_per_poll: int):
    """wait_start over ``poll`` while ``up_per_poll`` more agents, in order, come up
    between polls (supervisord launching them group by group)."""
    order = iter(names)

    def sleep(_):
        for name in [next(order, None) for _ in range(up_per_poll)]:
            if name is not None:
                sup.states[name] = "RUNNING"
    return client.wait_start(poll, names, 60, helpers=("watchdog",), sleep=sleep)


def test_a_start_asks_about_a_window_of_programs_not_every_one_each_poll():
    names = [f"a{i:03d}" for i in range(500)]
    sup = Supervisord({"watchdog": "RUNNING", **{n: "STOPPED" for n in names}})
    infos = boot(names, StatePoll(sup, ("watchdog", *names), window=20), sup, up_per_poll=25)
    assert {i["statename"] for i in infos.values()} == {"RUNNING"}
    whole = [n for m, n in sup.answered if m == "supervisor.getAllProcessInfo"]
    assert len(whole) == 2  # the first look, and the check once all were seen RUNNING
    assert max(n for m, n in sup.answered if m == "system.multicall") <= 20
    # what supervisord answered with in all: ~a whole read per 20 polls, not one per poll
    assert sum(n for _, n in sup.answered) < 3 * 501 + len(sup.answered) * 20


def test_a_program_that_crashed_after_it_ran_is_still_reported():
    names = ["a", "b", "c"]
    sup = Supervisord({"watchdog": "RUNNING", **{n: "STARTING" for n in names}})
    poll = StatePoll(sup, ("watchdog", *names), window=1)
    poll()  # the first, whole read
    sup.states.update(a="RUNNING")
    poll()  # asks about a alone
    sup.states.update(a="EXITED", b="RUNNING", c="RUNNING")  # a crashed, unasked
    infos = client.wait_start(poll, names, 60, helpers=("watchdog",), sleep=lambda s: None)
    assert client.start_failures(infos, names, ("watchdog",)) == ["a"]


def test_a_program_supervisord_does_not_have_stays_unknown_and_a_missing_helper_out():
    sup = Supervisord({"a": "RUNNING"})
    infos = client.wait_start(StatePoll(sup, ("web", "a", "ghost")), ["a", "ghost"], 60,
                              helpers=("web",), sleep=lambda s: None)
    assert infos["ghost"]["statename"] == "UNKNOWN"
    assert "web" not in infos
    assert client.start_failures(infos, ["a", "ghost"], ("web",)) == ["ghost"]


def test_a_timed_out_start_names_each_program_in_its_state_now(monkeypatch, tmp_path):
    """The window stays on the first agent not running; the message at the timeout is from a
    fresh read, not from the first look at the others."""
    from types import SimpleNamespace

    import pytest

    from coffee_team.errors import ActionRefused
    from coffee_team.ops import starting
    monkeypatch.setattr(starting, "POLL_WINDOW", 1)
    sup = Supervisord({"watchdog": "RUNNING", "a": "STARTING", "b": "STOPPED"})
    real = sup.__call__

    def rpc(method, *args):
        answer = real(method, *args)
        sup.states["b"] = "RUNNING"  # up right after the first look; never asked about again
        return answer
    team = SimpleNamespace(agents=[SimpleNamespace(name="a", priority=1),
                                   SimpleNamespace(name="b", priority=2)], log_dir=tmp_path)
    with pytest.raises(ActionRefused) as refused:
        starting.wait_running(team, rpc, ("a", "b"), 0.25, helpers=("watchdog",))
    assert "waiting for a (STARTING);" in str(refused.value)


def test_a_helper_that_exited_past_startsecs_fails_a_boot_at_once(tmp_path, monkeypatch):
    """On a loaded machine the web program's start-up outlasts startsecs: supervisord calls it
    RUNNING, then respawns it at once when it exits (never BACKOFF). In a boot, a helper that
    exited at all (its stop time set) has failed: it is asked about on every poll, and the
    line is its own last one, not supervisord's "Bad exit code 2"."""
    from types import SimpleNamespace

    import pytest

    from coffee_team.ops import starting
    from coffee_team.ops.starting import HelperFailed
    sup = Supervisord({"watchdog": "RUNNING", "web": "RUNNING", "a": "STOPPED"})
    stops = {"web": 0}
    info = sup.info
    sup.info = lambda name: {**info(name), "stop": stops.get(name, 0),
                             "spawnerr": "Bad exit code 2" if sup.states[name] == "EXITED"
                             else ""}
    polls = []

    def rpc(method, *args):
        if method == "supervisor.tailProcessStdoutLog":
            return ["coffee-team web: cannot listen on 127.0.0.1:8080: in use\n", 0, False]
        polls.append(method)
        if len(polls) == 3:  # web exits after its RUNNING, while the agent still starts
            sup.states["web"], stops["web"] = "EXITED", 1796660000
        return sup(method, *args)
    now = [0.0]
    real = client.wait_start
    monkeypatch.setattr(client, "wait_start", lambda *args, **kwargs: real(
        *args, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), **kwargs))
    team = SimpleNamespace(agents=[SimpleNamespace(name="a", priority=1)], log_dir=tmp_path)
    with pytest.raises(HelperFailed) as failed:
        starting.wait_running(team, rpc, ("a",), 60, helpers=("watchdog", "web"), booted=True)
    assert str(failed.value).startswith("web failed to start (exited): coffee-team web: "
                                        "cannot listen on 127.0.0.1:8080: in use; see ")
    assert len(polls) == 3 and now[0] < 1  # at once, not once a runs (it never does here)
    sup.states["web"] = "RUNNING"  # respawned meanwhile: still the one that exited
    infos = {n: sup.info(n) for n in sup.states}
    assert client.start_failures(infos, ["a"], ("watchdog", "web"), booted=True) == ["web"]
    # not in a boot: a helper restarted some time ago that runs now is fine
    assert client.start_failures(infos, ["a"], ("watchdog", "web")) == []
