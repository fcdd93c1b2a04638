"""coffee.* in-process: the interface as supervisord builds it, against a fake supervisord.

``make_coffee_rpcinterface(supervisord, team=...)`` is called exactly as supervisord's
``[rpcinterface:coffee]`` section does, with supervisor's own test doubles for supervisord
(see tests/fake_supervisord.py) and a real MessageQueue on a throwaway SQLite file: the queue
is never faked.  Calls go straight to the methods, so each test takes milliseconds; what only
a real supervisord can show (HTTP, the unix socket, reloads, latency) stays in
test_rpcinterface.py.

Every result is checked to survive supervisord's marshalling (no None, 32-bit ints, no
XML-illegal characters) and every fault to be one short line with supervisor's fault code.
"""
from __future__ import annotations

import inspect
import json
import math
import select
import os
import signal
import sqlite3
import time
import xmlrpc.client
from dataclasses import dataclass

import pytest
from supervisor import events
from supervisor.http import NOT_DONE_YET
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import ProcessStates, SupervisorStates
from supervisor.tests.base import DummyRequest
from supervisor.xmlrpc import (DeferredXMLRPCResponse, Faults, RootRPCInterface, RPCError,
                               SystemNamespaceRPCInterface, traverse)

from coffee_team import heartbeat
from coffee_team.rpc import interface as rpcinterface, queue as rpcqueue
from coffee_team.rpc import signals as rpcsignals, values as rpcvalues
from coffee_team.queue import MessageQueue
from coffee_team.taskstate import STATES
from coffee_team.team import Team
from tests.fake_supervisord import FakeSupervisord
from tests.clock import FakeClock
from tests.fast_team import assert_xmlrpc_safe, real_time_clock, temp_root, write_team

QUEUE_SIZE = 4  # max_queue_size: small, so backpressure is one short loop away

AGENTS = {
    "architect": {"priority": 1, "handles": ["design_request"]},
    "code_developer": {"priority": 2},
    "assistant": {"priority": 3, "handles": ["question"]},
}

# One valid call per coffee.* method.  test_every_public_method_is_covered keeps this table
# (and so the parametrized tests below) in step with the interface.
VALID_CALLS = {
    "getAPIVersion": (),
    "getTeamStatus": (),
    "sendMessage": ("ci", "assistant", "question", {}),
    "getQueueStats": (),
    "listTasks": (),
    "getRestartHistory": ("assistant",),
    "getEvents": (),
    "getNotifications": (),
    "ackNotification": (1,),
    "getMetrics": (),
    "restartAgent": ("assistant",),
    "getTask": (1,),
    "cancelTask": (1,),
    "retryTask": (1,),
    "pauseAgent": ("assistant",),
    "resumeAgent": ("assistant",),
    "getLoadedTeam": (),
    "reloadTeam": (),
    "getCosts": (),
}

HUGE = "x" * (2 * 2**20)


@dataclass
class Coffee:
    """The interface under test and what surrounds it."""
    iface: rpcinterface.CoffeeNamespaceRPCInterface
    supervisord: FakeSupervisord
    clock: FakeClock
    team: Team
    queue: MessageQueue  # a second connection to the same database (as agents/watchdog have)

    def call(self, method: str, *args):
        """Call like supervisord does, and check the answer could go out over XML-RPC."""
        result = getattr(self.iface, method)(*args)
        if not callable(result):
            assert_xmlrpc_safe(result)
        return result

    def fault(self, method: str, *args) -> RPCError:
        """The RPCError a call raises: never a traceback, always one short line."""
        with pytest.raises(RPCError) as info:
            getattr(self.iface, method)(*args)
        error = info.value
        assert "\n" not in error.text and len(error.text) < 400, error.text
        assert "Traceback" not in error.text
        return error

    def task(self, task_id: int) -> dict:
        return next(t for t in self.queue.list_tasks(limit=1000) if t["id"] == task_id)


def discard(dispatcher) -> None:
    """Drop a wake-up dispatcher from the socket map and close its pipe (asyncore_25's
    file_dispatcher.close() assumes a socket)."""
    dispatcher.del_channel()
    os.close(dispatcher.fd)


@pytest.fixture
def supervisor_globals():
    """make_coffee_rpcinterface touches process-wide state that supervisord owns: event
    subscriptions and the signal wake-up fd/dispatcher.  Put both back after each test so
    the tests stay independent (and pytest's own signal handling untouched)."""
    callbacks = events.callbacks[:]
    previous_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous_fd)
    previous_dispatcher = rpcsignals._signal_wakeup
    try:
        yield
    finally:
        events.callbacks[:] = callbacks
        ours = signal.set_wakeup_fd(previous_fd)
        dispatcher = rpcsignals._signal_wakeup
        if dispatcher is not None and dispatcher is not previous_dispatcher:
            discard(dispatcher)
            if ours not in (-1, previous_fd):
                os.close(ours)
        rpcsignals._signal_wakeup = previous_dispatcher


def build(team: Team, supervisord: FakeSupervisord, clock: FakeClock):
    iface = rpcinterface.make_coffee_rpcinterface(supervisord, team=str(team.path))
    # The interface's clock seam; set before the first call, since the queue it opens
    # lazily takes this clock too.
    iface._now = clock
    return iface


@pytest.fixture
def coffee(supervisor_globals):
    with temp_root() as root:
        team = write_team(root, AGENTS, max_queue_size=QUEUE_SIZE)
        clock = real_time_clock()
        supervisord = FakeSupervisord(team.names)
        iface = build(team, supervisord, clock)
        queue = MessageQueue.from_team(team, clock=clock)
        try:
            yield Coffee(iface, supervisord, clock, team, queue)
        finally:
            queue.close()
            if iface._queue is not None:
                iface._queue.close()


def public_methods() -> list[str]:
    cls = rpcinterface.CoffeeNamespaceRPCInterface
    return sorted(name for name, value in vars(cls).items()
                  if callable(value) and not name.startswith("_"))


def arity(method: str) -> tuple[int, int]:
    """(required, total) parameters of a coffee.* method, read from its undecorated def."""
    func = getattr(rpcinterface.CoffeeNamespaceRPCInterface, method).__wrapped__
    params = list(inspect.signature(func).parameters.values())[1:]  # without self
    return sum(p.default is inspect.Parameter.empty for p in params), len(params)


def in_progress(coffee: Coffee, agent: str, type: str = "job", content=None) -> int:
    """A task claimed by ``agent`` (what a running agent holds)."""
    task_id = coffee.queue.send("ci", agent, type, content or {})
    claimed = coffee.queue.claim(agent, 1)
    assert [t.id for t in claimed] == [task_id]
    return task_id


# --- the namespace ---------------------------------------------------------------------------

def test_the_rpc_plugins_queue_takes_every_team_option(supervisor_globals):
    """retry, lease_seconds and escalate_after reach the plugin's queue as they reach the
    agents' (one team → queue mapping: Team.queue_options)."""
    with temp_root() as root:
        team = write_team(root, AGENTS, max_queue_size=QUEUE_SIZE, lease_seconds=45,
                          escalate_after=600, retry={"attempts": 3, "backoff": 2})
        iface = build(team, FakeSupervisord(team.names), real_time_clock())
        try:
            queue = iface._queue_()
            assert queue.lease_seconds == 45.0 and queue.escalate_after == 600.0
            assert set(queue.retry) == set(AGENTS)
            assert queue.retry["architect"].attempts == 3
            assert queue.retry["architect"].backoff == 2.0
            assert queue.max_queue_size == QUEUE_SIZE and queue.agents == team.names
            assert queue.host == team.state_host and queue.clock() == iface._now()
        finally:
            iface._db.close()


def test_every_public_method_is_covered():
    assert public_methods() == sorted(VALID_CALLS)


def test_namespace_as_supervisord_publishes_it(coffee):
    """system.* lists and documents coffee.*; private helpers are not reachable."""
    root = RootRPCInterface([("supervisor", SupervisorNamespaceRPCInterface(coffee.supervisord)),
                             ("coffee", coffee.iface)])
    system = SystemNamespaceRPCInterface([("supervisor", root.supervisor),
                                          ("coffee", coffee.iface)])
    listed = set(system.listMethods())
    assert {f"coffee.{m}" for m in VALID_CALLS} <= listed
    assert not [m for m in listed if m.startswith("coffee._")]
    for method in VALID_CALLS:
        signature = system.methodSignature(f"coffee.{method}")
        assert len(signature) - 1 == arity(method)[1], method  # documented params == real ones
        assert "@return" in system.methodHelp(f"coffee.{method}")
    assert traverse(root, "coffee.getAPIVersion", []) == rpcinterface.API_VERSION
    for name in ("coffee._queue_", "coffee._agent", "coffee.nope", "coffee.team.names"):
        with pytest.raises(RPCError) as info:
            traverse(root, name, [])
        assert info.value.code == Faults.UNKNOWN_METHOD, name


def test_api_version(coffee):
    version = coffee.call("getAPIVersion")
    assert version == rpcinterface.API_VERSION
    assert all(part.isdigit() for part in version.split("."))


@pytest.mark.parametrize("method", sorted(VALID_CALLS))
def test_wrong_arity_is_incorrect_parameters(coffee, method):
    required, total = arity(method)
    for count in [total + 1] + ([required - 1] if required else []):
        error = coffee.fault(method, *(f"a{i}" for i in range(count)))
        assert error.code == Faults.INCORRECT_PARAMETERS
        assert f"coffee.{method}(" in error.text and f"got {count}" in error.text
    assert coffee.queue.list_tasks() == []  # nothing ran


@pytest.mark.parametrize("method", sorted(VALID_CALLS))
def test_refused_while_supervisord_shuts_down(coffee, method):
    coffee.supervisord.options.mood = SupervisorStates.SHUTDOWN
    assert coffee.fault(method, *VALID_CALLS[method]).code == Faults.SHUTDOWN_STATE


def test_bad_team_file_leaves_supervisord_serving(supervisor_globals):
    """A broken team file must not stop supervisord from starting: coffee.* answers FAILED
    with the reason, and no event handler is subscribed."""
    with temp_root() as root:
        team = write_team(root, AGENTS)
        team.path.write_text("team: [not, a, mapping\n")
        callbacks = len(events.callbacks)
        iface = build(team, FakeSupervisord(team.names), real_time_clock())
        assert len(events.callbacks) == callbacks
        for method, args in VALID_CALLS.items():
            with pytest.raises(RPCError) as info:
                getattr(iface, method)(*args)
            assert info.value.code == Faults.FAILED
            assert "unavailable" in info.value.text or method == "reloadTeam"
            assert iface.team_error.splitlines()[0] in info.value.text
        write_team(root, AGENTS)  # fixed: reloadTeam brings coffee.* up without a restart
        assert iface.reloadTeam() == list(AGENTS)
        assert len(events.callbacks) == callbacks + 3  # process state, stopping, tick
        assert iface.getQueueStats().keys() == AGENTS.keys()
        iface._queue.close()


def test_reload_team_routes_by_the_new_file_and_keeps_the_old_on_a_bad_one(coffee):
    before = coffee.call("getLoadedTeam")
    assert before["agents"] == list(AGENTS) and "architect" in before["text"]
    coffee.call("sendMessage", "ci", "", "question", {})  # opens the queue
    write_team(coffee.team.root, {**AGENTS, "tester": {"priority": 4, "handles": ["test_run"]}})
    assert coffee.call("getLoadedTeam") == before  # editing the file alone changes nothing
    assert coffee.fault("sendMessage", "ci", "", "test_run", {}).code == Faults.BAD_NAME
    assert coffee.call("reloadTeam") == [*AGENTS, "tester"]
    task_id = coffee.call("sendMessage", "ci", "", "test_run", {})
    assert coffee.task(task_id)["recipient"] == "tester"
    coffee.team.path.write_text("agents: {Bad Name: {}}\n")
    fault = coffee.fault("reloadTeam")
    assert fault.code == Faults.FAILED and "bad agent name" in fault.text
    assert coffee.call("getLoadedTeam")["agents"] == [*AGENTS, "tester"]


def test_factory_needs_the_team_path(supervisor_globals):
    with pytest.raises(ValueError, match="team="):
        rpcinterface.make_coffee_rpcinterface(FakeSupervisord(()))


def test_factory_reload_replaces_the_signal_wakeup(coffee):
    """supervisord builds the interfaces again on every reload: one wake-up dispatcher stays
    in its socket map, and a signal makes it readable (so poll() returns and reaps)."""
    first = rpcsignals._signal_wakeup
    assert asyncore.socket_map.get(first.fd) is first
    os.close(signal.set_wakeup_fd(-1))  # likewise the old write end
    build(coffee.team, coffee.supervisord, coffee.clock)
    second = rpcsignals._signal_wakeup
    assert second is not first and asyncore.socket_map.get(second.fd) is second
    assert asyncore.socket_map.get(first.fd) is not first
    discard(first)  # supervisord closes the old generation's descriptors on a reload
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert second.readable()
        assert select.select([second.fd], [], [], 1.0)[0] == [second.fd]
        second.handle_read()
        assert select.select([second.fd], [], [], 0)[0] == []
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --- getTeamStatus ---------------------------------------------------------------------------

def write_heartbeat(coffee: Coffee, name: str, **fields) -> None:
    path = coffee.team.status_dir / f"{name}_status.json"
    path.write_text(json.dumps({"agent": name, **fields}))


def test_team_status(coffee):
    now = coffee.clock()
    architect = coffee.supervisord.process("architect")
    architect.pid, architect.laststart = os.getpid(), int(now) - 100  # a real process: psutil
    coffee.supervisord.process("assistant").state = ProcessStates.STOPPED
    task = {"id": 7, "type": "design_request", "started_at": now - 1}
    write_heartbeat(coffee, "architect", last_heartbeat=now - 2.5, current_task=task)
    coffee.queue.save_restart_state("assistant", attempts=2, given_up=True)
    coffee.queue.save_restart_state("code_developer", attempts=1, next_restart_at=now + 30)

    status = coffee.call("getTeamStatus")

    by_priority = [a.name for a in sorted(coffee.team.agents, key=lambda a: (a.priority, a.name))]
    assert [a["name"] for a in status["agents"]] == by_priority
    assert status["agents_total"] == len(coffee.team.names)
    assert status["agents_running"] == sum(
        1 for g in coffee.supervisord.process_groups.values()
        for p in g.processes.values() if p.get_state() == ProcessStates.RUNNING)
    assert status["supervisord_pid"] == coffee.supervisord.options.get_pid()
    assert status["now"] == now
    rows = {a["name"]: a for a in status["agents"]}

    row = rows["architect"]
    assert (row["state"], row["pid"], row["uptime_seconds"]) == ("RUNNING", os.getpid(), 100.0)
    assert row["rss_mb"] > 0
    assert row["heartbeat_age_seconds"] == 2.5 and row["last_heartbeat"] == now - 2.5
    assert row["current_task"] == task
    assert (row["restarts"], row["given_up"]) == (0, False)
    assert "next_restart_at" not in row  # None is left out, never sent as nil

    row = rows["assistant"]
    assert (row["state"], row["restarts"], row["given_up"]) == ("STOPPED", 2, True)
    assert {"heartbeat_age_seconds", "last_heartbeat", "current_task"}.isdisjoint(row)
    assert rows["code_developer"]["next_restart_at"] == now + 30


def test_team_status_parses_a_heartbeat_again_only_once_it_was_replaced(coffee, monkeypatch):
    parsed = []
    real = heartbeat.read_heartbeat
    monkeypatch.setattr(heartbeat, "read_heartbeat",
                        lambda d, agent: parsed.append(agent) or real(d, agent))

    def architect():
        return next(a for a in coffee.call("getTeamStatus")["agents"] if a["name"] == "architect")

    heartbeat.write_heartbeat(coffee.team.status_dir, "architect",
                              {"last_heartbeat": coffee.clock() - 5})
    assert [architect()["last_heartbeat"] for _ in range(3)] == [coffee.clock() - 5] * 3
    assert parsed.count("architect") == 1
    heartbeat.write_heartbeat(coffee.team.status_dir, "architect",
                              {"last_heartbeat": coffee.clock() - 1})
    assert architect()["last_heartbeat"] == coffee.clock() - 1
    assert parsed.count("architect") == 2


def test_team_status_with_out_of_range_values_stays_marshallable(coffee):
    """A heartbeat file is written by agent code: big ints and control characters must not
    break the answer."""
    write_heartbeat(coffee, "assistant", last_heartbeat=coffee.clock(),
                    current_task={"id": 2**40, "type": "a\x00b", "started_at": None})
    row = next(a for a in coffee.call("getTeamStatus")["agents"] if a["name"] == "assistant")
    assert row["current_task"]["id"] == float(2**40)
    assert row["current_task"]["type"] == "a\ufffdb" and "started_at" not in row["current_task"]


# --- sendMessage -----------------------------------------------------------------------------

def test_send_routes_by_type_and_defaults_priority(coffee):
    task_id = coffee.call("sendMessage", "ci", "", "question", {"q": "why?"})
    assert isinstance(task_id, int)
    task = coffee.task(task_id)
    assert (task["recipient"], task["sender"], task["type"]) == ("assistant", "ci", "question")
    assert task["content"] == {"q": "why?"} and task["priority"] == 5
    assert task["status"] == "pending"


def test_send_takes_json_text_and_scalars(coffee):
    from_text = coffee.call("sendMessage", "ci", "architect", "design_request",
                            '{"spec": [1, 2]}', 1)
    assert coffee.task(from_text)["content"] == {"spec": [1, 2]}
    assert coffee.task(from_text)["priority"] == 1
    for content in (True, 1.5, [1, "two"], 0):
        task_id = coffee.call("sendMessage", "ci", "code_developer", "t", content, 9)
        assert coffee.task(task_id)["content"] == content
        coffee.queue.claim("code_developer", 1)  # keep under max_queue_size


def test_send_broadcast_returns_the_first_id(coffee):
    first = coffee.call("sendMessage", "ci", "all", "announce", "null", 9)
    announced = [t for t in coffee.queue.list_tasks() if t["type"] == "announce"]
    assert sorted(t["recipient"] for t in announced) == sorted(coffee.team.names)
    assert first == min(t["id"] for t in announced)


def test_send_dedupes_on_key(coffee):
    one = coffee.call("sendMessage", "ci", "assistant", "q", {}, 5, "same-key")
    assert coffee.call("sendMessage", "ci", "assistant", "q", {"other": 1}, 5, "same-key") == one
    assert coffee.task(one)["content"] == {}  # the live task is kept as it was
    # '' is "no key": two such sends are two tasks
    assert coffee.call("sendMessage", "ci", "assistant", "q", {}, 5, "") != \
        coffee.call("sendMessage", "ci", "assistant", "q", {}, 5, "")


def deep(depth: int):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


SEND_FAULTS = [
    # (label, args after the method name, expected fault code)
    ("int sender", (1, "assistant", "q", {}), Faults.BAD_ARGUMENTS),
    ("struct recipient", ("ci", {}, "q", {}), Faults.BAD_ARGUMENTS),
    ("int type", ("ci", "assistant", 3, {}), Faults.BAD_ARGUMENTS),
    ("empty type", ("ci", "assistant", "", {}), Faults.BAD_ARGUMENTS),
    ("int dedupe key", ("ci", "assistant", "q", {}, 5, 7), Faults.BAD_ARGUMENTS),
    ("long dedupe key", ("ci", "assistant", "q", {}, 5, "k" * 300), Faults.BAD_ARGUMENTS),
    ("string priority", ("ci", "assistant", "q", {}, "5"), Faults.BAD_ARGUMENTS),
    ("priority 10", ("ci", "assistant", "q", {}, 10), Faults.BAD_ARGUMENTS),
    ("bool priority", ("ci", "assistant", "q", {}, True), Faults.BAD_ARGUMENTS),
    ("None content", ("ci", "assistant", "q", None), Faults.BAD_ARGUMENTS),
    ("invalid JSON", ("ci", "assistant", "q", "{nope"), Faults.BAD_ARGUMENTS),
    ("JSON NaN", ("ci", "assistant", "q", "NaN"), Faults.BAD_ARGUMENTS),
    ("2 MB string", ("ci", "assistant", "q", HUGE), Faults.BAD_ARGUMENTS),
    ("2 MB struct", ("ci", "assistant", "q", {"a": HUGE}), Faults.BAD_ARGUMENTS),
    ("2 MB sender", (HUGE, "assistant", "q", {}), Faults.BAD_ARGUMENTS),
    ("struct 65 deep", ("ci", "assistant", "q", deep(65)), Faults.BAD_ARGUMENTS),
    ("JSON 100 deep", ("ci", "assistant", "q", "[" * 100 + "]" * 100), Faults.BAD_ARGUMENTS),
    ("JSON 100000 deep", ("ci", "assistant", "q", "[" * 100000 + "]" * 100000),
     Faults.BAD_ARGUMENTS),
    ("unknown recipient", ("ci", "nobody", "q", {}), Faults.BAD_NAME),
    ("2 MB recipient", ("ci", HUGE, "q", {}), Faults.BAD_NAME),
    ("unroutable type", ("ci", "", "nobody_handles_this", {}), Faults.BAD_NAME),
]


@pytest.mark.parametrize("label,args,code", SEND_FAULTS, ids=[f[0] for f in SEND_FAULTS])
def test_send_refuses_bad_input_and_writes_nothing(coffee, label, args, code):
    assert coffee.fault("sendMessage", *args).code == code
    assert coffee.queue.list_tasks() == []


def test_send_64_deep_is_the_limit(coffee):
    assert coffee.call("sendMessage", "ci", "assistant", "q", deep(63))  # 64 levels with the 1


def test_rows_nested_992_deep_by_an_older_version_are_listed_not_fatal(coffee):
    """Stored before every door checked depth: listings show a placeholder, no RecursionError."""
    coffee.queue.send("ci", "assistant", "q", {})
    now = coffee.clock()
    coffee.queue.backend.insert_tasks(
        ["old", "assistant", "q", "[" * 992 + "]" * 992, 5, now, None, now, None], 1)
    task, _ = coffee.call("listTasks")
    assert task["content_json"].startswith('"<content not shown: nested more than 64')
    assert coffee.call("getTask", task["id"])["id"] == task["id"]
    assert coffee.call("getQueueStats")["assistant"]["pending"] == 2


def test_queue_full_is_failed_and_only_for_that_recipient(coffee):
    for i in range(QUEUE_SIZE):
        coffee.call("sendMessage", "ci", "code_developer", "t", {"i": i})
    error = coffee.fault("sendMessage", "ci", "code_developer", "t", {})
    assert error.code == Faults.FAILED and "queue full" in error.text
    assert coffee.queue.stats()["code_developer"]["pending"] == QUEUE_SIZE
    assert coffee.call("sendMessage", "ci", "assistant", "t", {})  # others unaffected
    coffee.queue.claim("code_developer", 1)
    assert coffee.call("sendMessage", "ci", "code_developer", "t", {})  # room again


def test_database_busy_is_a_quick_failed_and_reads_go_on(coffee):
    """A write lock held elsewhere: supervisord's loop waits only the 200 ms busy timeout,
    and the caller is told to retry.  Readers are not blocked (WAL)."""
    coffee.call("getQueueStats")  # open the interface's connection first
    blocker = sqlite3.connect(coffee.team.database_url, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        error = coffee.fault("sendMessage", "ci", "assistant", "q", {})
        waited = time.monotonic() - started
        assert error.code == Faults.FAILED
        assert "database busy" in error.text and "retry" in error.text
        assert rpcqueue.BUSY_TIMEOUT_MS / 1000 * 0.5 <= waited < 1.0
        assert coffee.call("getQueueStats")["assistant"]["pending"] == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert coffee.call("sendMessage", "ci", "assistant", "q", {})
    assert not [line for line in coffee.supervisord.logged if "sendMessage" in line]


# --- getQueueStats ---------------------------------------------------------------------------

def test_queue_stats_count_every_status(coffee):
    zero = {"pending": 0, "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    empty = coffee.call("getQueueStats")
    assert set(empty) == set(coffee.team.names)
    assert all(s == zero for s in empty.values())

    coffee.queue.send("ci", "assistant", "q", {})
    coffee.queue.send("ci", "assistant", "q", {})
    coffee.queue.cancel_task(coffee.queue.send("ci", "assistant", "q", {}))
    done = in_progress(coffee, "architect")
    coffee.queue.mark_completed(done, {"ok": True})
    broken = in_progress(coffee, "code_developer")
    coffee.queue.mark_failed(broken, "boom")
    in_progress(coffee, "code_developer")
    coffee.clock.advance(5)

    stats = coffee.call("getQueueStats")
    assert stats["assistant"] == {**zero, "pending": 2, "cancelled": 1,
                                  "oldest_pending_age_s": 5.0}
    assert stats["architect"] == {**zero, "completed": 1}
    assert stats["code_developer"] == {**zero, "in_progress": 1, "failed": 1}


def test_queue_stats_keep_recipients_the_team_file_lost(coffee):
    """Tasks of an agent removed from team.yaml are still counted, not hidden."""
    with MessageQueue(coffee.team.database_url, agents=(*coffee.team.names, "retired"),
                      clock=coffee.clock) as old_team:
        old_team.send("ci", "retired", "q", {})
    assert coffee.call("getQueueStats")["retired"]["pending"] == 1


# --- listTasks -------------------------------------------------------------------------------

def test_list_tasks_filters_and_fields(coffee):
    first = coffee.queue.send("ci", "assistant", "q", {"n": 1}, dedupe_key="k1")
    second = coffee.queue.send("ci", "architect", "design_request", [1, 2])
    done = in_progress(coffee, "code_developer")
    coffee.queue.mark_completed(done, {"answer": 42})
    failed = in_progress(coffee, "code_developer")
    coffee.queue.mark_failed(failed, "boom")

    tasks = coffee.call("listTasks")
    assert [t["id"] for t in tasks] == sorted((t["id"] for t in tasks), reverse=True)
    rows = {t["id"]: t for t in tasks}
    assert json.loads(rows[second]["content_json"]) == [1, 2]
    assert "result_json" not in rows[second] and "completed_at" not in rows[second]
    assert "error" not in rows[second] and "claimed_by" not in rows[second]
    assert json.loads(rows[done]["result_json"]) == {"answer": 42}
    assert rows[done]["status"] == "completed" and rows[done]["claimed_by"] == "code_developer"
    assert rows[first]["dedupe_key"] == "k1" and "dedupe_key" not in rows[second]
    assert rows[failed]["error"] == "boom" and rows[failed]["status"] == "failed"

    assert [t["id"] for t in coffee.call("listTasks", {"status": "failed"})] == [failed]
    assert [t["id"] for t in coffee.call("listTasks", {"agent": "code_developer"})] == [
        failed, done]
    assert [t["id"] for t in coffee.call("listTasks", {"limit": 2})] == [t["id"] for t in tasks[:2]]
    assert coffee.call("listTasks", {"status": "", "agent": ""}) == tasks  # '' = no filter
    assert coffee.call("listTasks", {"agent": "architect", "status": "completed"}) == []


def test_list_tasks_returns_journal_values_xmlrpc_safe(coffee):
    """Content written through the Python API may hold None, big ints and control chars:
    content_json carries them intact, as JSON text."""
    content = {"n": None, "big": 2**40, "ctl": "a\x01b"}
    task_id = coffee.queue.send("py", "assistant", "q", content)
    row = next(t for t in coffee.call("listTasks") if t["id"] == task_id)
    assert json.loads(row["content_json"]) == content


LIST_FAULTS = [
    ("filter not struct", ("pending",), Faults.BAD_ARGUMENTS),
    ("unknown key", ({"sql": "1; DROP TABLE tasks"},), Faults.BAD_ARGUMENTS),
    ("bad status", ({"status": "done"},), Faults.BAD_ARGUMENTS),
    ("unknown agent", ({"agent": "nobody"},), Faults.BAD_NAME),
    ("int agent", ({"agent": 5},), Faults.BAD_ARGUMENTS),
    ("huge limit", ({"limit": 10**6},), Faults.BAD_ARGUMENTS),
    ("zero limit", ({"limit": 0},), Faults.BAD_ARGUMENTS),
    ("bool limit", ({"limit": True},), Faults.BAD_ARGUMENTS),
    ("string limit", ({"limit": "5"},), Faults.BAD_ARGUMENTS),
]


@pytest.mark.parametrize("label,args,code", LIST_FAULTS, ids=[f[0] for f in LIST_FAULTS])
def test_list_tasks_refuses_bad_filters(coffee, label, args, code):
    assert coffee.fault("listTasks", *args).code == code


# --- getRestartHistory, getEvents ------------------------------------------------------------

def test_restart_history_is_restart_events_newest_first(coffee):
    q = coffee.queue
    crash = q.record_event("assistant", "crash", exitstatus=1)
    coffee.clock.advance(1)
    q.record_event("assistant", "requeued", count=2)  # not a restart kind
    q.record_event("architect", "crash")  # another agent
    scheduled = q.record_event("assistant", "restart_scheduled", delay=2**40)
    q.save_restart_state("assistant", attempts=3, given_up=True, last_crash_at=coffee.clock())

    history = coffee.call("getRestartHistory", "assistant")
    assert [e["id"] for e in history["events"]] == [scheduled, crash]
    assert history["events"][1]["detail"] == {"exitstatus": 1}
    assert history["events"][0]["detail"] == {"delay": float(2**40)}  # beyond 32 bits
    assert (history["agent"], history["restarts"], history["given_up"]) == ("assistant", 3, True)
    assert history["last_crash_at"] == coffee.clock()
    assert "next_restart_at" not in history and "running_since" not in history
    assert [e["id"] for e in coffee.call("getRestartHistory", "assistant", 1)["events"]] == [
        scheduled]
    quiet = coffee.call("getRestartHistory", "code_developer")
    assert quiet["events"] == [] and (quiet["restarts"], quiet["given_up"]) == (0, False)


def test_restart_history_of_a_corrupt_row_is_a_fault_not_a_crash(coffee):
    """Whatever goes wrong inside is a FAILED fault naming the error, and it is logged."""
    connection = sqlite3.connect(coffee.team.database_url)
    with connection:
        connection.execute("INSERT INTO events (ts, agent, kind, detail) VALUES (?, ?, ?, ?)",
                           (coffee.clock(), "assistant", "crash", "{not json"))
    connection.close()
    error = coffee.fault("getRestartHistory", "assistant")
    assert error.code == Faults.FAILED and "JSONDecodeError" in error.text
    assert any("getRestartHistory failed" in line for line in coffee.supervisord.logged)


def test_events_since_id_oldest_first(coffee):
    ids = [coffee.queue.record_event("assistant", "crash", n=i) for i in range(5)]
    events_ = coffee.call("getEvents")
    assert [e["id"] for e in events_] == ids
    assert [e["detail"]["n"] for e in events_] == list(range(5))
    assert [e["id"] for e in coffee.call("getEvents", ids[1], 2)] == ids[2:4]
    assert coffee.call("getEvents", ids[-1]) == []


HISTORY_EVENT_FAULTS = [
    ("history unknown agent", "getRestartHistory", ("nobody",), Faults.BAD_NAME),
    ("history int agent", "getRestartHistory", (7,), Faults.BAD_ARGUMENTS),
    ("history 2 MB agent", "getRestartHistory", (HUGE,), Faults.BAD_NAME),
    ("history limit 0", "getRestartHistory", ("assistant", 0), Faults.BAD_ARGUMENTS),
    ("history limit 1001", "getRestartHistory", ("assistant", 1001), Faults.BAD_ARGUMENTS),
    ("events string since", "getEvents", ("0",), Faults.BAD_ARGUMENTS),
    ("events negative since", "getEvents", (-1,), Faults.BAD_ARGUMENTS),
    ("events since beyond 32 bits", "getEvents", (2**31,), Faults.BAD_ARGUMENTS),
    ("events double limit", "getEvents", (0, 1.5), Faults.BAD_ARGUMENTS),
    ("notifications double since", "getNotifications", (1.5,), Faults.BAD_ARGUMENTS),
    ("notifications limit 0", "getNotifications", (0, 0), Faults.BAD_ARGUMENTS),
    ("ack unknown id", "ackNotification", (2**31 - 1,), Faults.BAD_ARGUMENTS),
    ("ack string id", "ackNotification", ("1",), Faults.BAD_ARGUMENTS),
    ("ack bool id", "ackNotification", (True,), Faults.BAD_ARGUMENTS),
]


@pytest.mark.parametrize("label,method,args,code", HISTORY_EVENT_FAULTS,
                         ids=[f[0] for f in HISTORY_EVENT_FAULTS])
def test_journal_methods_refuse_bad_input(coffee, label, method, args, code):
    assert coffee.fault(method, *args).code == code


# --- notifications ---------------------------------------------------------------------------

def test_notifications_and_ack(coffee):
    ids = [coffee.queue.notify(level, "assistant", f"title {level}", "message")
           for level in ("INFO", "WARNING", "CRITICAL")]
    rows = coffee.call("getNotifications")
    assert [n["id"] for n in rows] == ids
    assert [n["level"] for n in rows] == ["INFO", "WARNING", "CRITICAL"]
    assert all(n["sound"] is False and n["acknowledged"] is False for n in rows)
    assert [n["id"] for n in coffee.call("getNotifications", ids[0], 1)] == [ids[1]]

    assert coffee.call("ackNotification", ids[2]) is True
    assert coffee.call("ackNotification", ids[2]) is False  # already acknowledged
    acked = {n["id"]: n["acknowledged"] for n in coffee.call("getNotifications")}
    assert acked == {ids[0]: False, ids[1]: False, ids[2]: True}


# --- getMetrics ------------------------------------------------------------------------------

def test_metrics_measure_claim_to_finish(coffee):
    slow = in_progress(coffee, "architect", "design_request")
    coffee.clock.advance(0.25)
    coffee.queue.mark_completed(slow, None)
    fast = in_progress(coffee, "assistant", "question")
    coffee.clock.advance(0.05)
    coffee.queue.mark_failed(fast, "boom")

    metrics = coffee.call("getMetrics")
    assert metrics["days"] == 7.0 and isinstance(metrics["days"], float)
    assert [b["task_type"] for b in metrics["bottlenecks"]] == ["design_request", "question"]
    design = metrics["bottlenecks"][0]
    assert design["count"] == 1 and math.isclose(design["avg_ms"], 250, abs_tol=1)
    assert math.isclose(design["max_ms"], 250, abs_tol=1)
    agents = {a["agent"]: a for a in metrics["agents"]}
    assert set(agents) == {"architect", "assistant"}
    assert math.isclose(agents["assistant"]["avg_ms"], 50, abs_tol=1)

    coffee.clock.advance(2 * 86400)
    assert coffee.call("getMetrics", 1) == {"days": 1.0, "bottlenecks": [], "agents": [],
                                            "states": dict.fromkeys(STATES, 0)}
    assert len(coffee.call("getMetrics", 2.5)["agents"]) == 2
    assert coffee.call("getMetrics", rpcvalues.MAX_DAYS)["days"] == rpcvalues.MAX_DAYS


@pytest.mark.parametrize("days", [0, -1, True, "7", float("nan"), float("inf"), 1e300,
                                  rpcvalues.MAX_DAYS + 1], ids=repr)
def test_metrics_refuse_bad_days(coffee, days):
    assert coffee.fault("getMetrics", days).code == Faults.BAD_ARGUMENTS


# --- getCosts --------------------------------------------------------------------------------

def test_costs_add_up_by_agent_type_and_day(coffee):
    q = coffee.queue
    q.record_usage(1, "architect", "design_request", {"cost_usd": 0.25, "tokens_in": 10,
                                                      "tokens_out": 5, "cache_read": 3})
    q.record_usage(2, "architect", "review", {"cost_usd": 0.5, "tokens_in": 1})
    coffee.clock.advance(86400)
    q.record_usage(3, "assistant", "question", {"cost_usd": 0.125, "tokens_out": 2**40})
    by_agent = coffee.call("getCosts")
    assert [(g["key"], g["runs"], g["cost_usd"]) for g in by_agent["groups"]] == \
        [("architect", 2, 0.75), ("assistant", 1, 0.125)]
    assert by_agent["total"]["cost_usd"] == 0.875 and by_agent["total"]["tokens_in"] == 11
    assert by_agent["total"]["tokens_out"] == float(2**40 + 5)  # beyond 32 bits: a double
    assert [g["key"] for g in coffee.call("getCosts", "type")["groups"]] == \
        ["design_request", "question", "review"]
    assert len(coffee.call("getCosts", "day")["groups"]) == 2
    assert coffee.call("getCosts", "agent", 0.5)["total"]["runs"] == 1


@pytest.mark.parametrize("args", [("team",), (3,), ("agent", 0), ("agent", "7")], ids=repr)
def test_costs_refuse_bad_arguments(coffee, args):
    assert coffee.fault("getCosts", *args).code == Faults.BAD_ARGUMENTS


# --- restartAgent ----------------------------------------------------------------------------

def manual_restarts(coffee: Coffee, agent: str) -> list[dict]:
    return [e for e in coffee.queue.events(agent=agent, limit=1000) if e["kind"] == "manual_restart"]


def test_restart_of_a_stopped_agent_clears_give_up_and_starts(coffee):
    process = coffee.supervisord.process("assistant")
    process.state = ProcessStates.FATAL
    coffee.queue.save_restart_state("assistant", attempts=3, given_up=True,
                                    next_restart_at=coffee.clock() + 60)

    assert coffee.call("restartAgent", "assistant") is True

    assert process.spawned and not process.stop_called
    assert process.get_state() == ProcessStates.STARTING
    state = coffee.queue.restart_state("assistant")
    assert (state["attempts"], state["given_up"], state["next_restart_at"]) == (0, False, None)
    [event] = manual_restarts(coffee, "assistant")
    assert event["detail"] == {"source": "xmlrpc", "from_state": "FATAL"}


def test_restart_of_a_running_agent_that_stops_at_once(coffee):
    process = coffee.supervisord.process("architect")
    old_pid = process.pid
    assert coffee.call("restartAgent", "architect") is True
    assert process.stop_called and process.spawned and process.pid != old_pid
    assert manual_restarts(coffee, "architect")[0]["detail"]["from_state"] == "RUNNING"


def test_restart_waits_for_the_stop_with_a_deferred_callback(coffee):
    """The stop takes a while: restartAgent returns supervisor's deferred callback instead of
    blocking; it answers NOT_DONE_YET until the child is reaped, then starts the agent."""
    process = coffee.supervisord.process("architect")
    process.slow_stop = True

    onwait = coffee.call("restartAgent", "architect")

    assert callable(onwait) and onwait.rpcinterface is coffee.iface and onwait.delay > 0
    assert process.stop_called and process.get_state() == ProcessStates.STOPPING
    process.stop_report_called = False
    assert onwait() is NOT_DONE_YET
    assert process.stop_report_called and not process.spawned
    coffee.clock.advance(1)
    assert onwait() is NOT_DONE_YET
    process.reaped()
    assert onwait() is True
    assert process.spawned and process.get_state() == ProcessStates.STARTING


def test_restart_gives_up_waiting_after_stopwaitsecs(coffee):
    process = coffee.supervisord.process("architect")
    process.slow_stop = True
    onwait = coffee.call("restartAgent", "architect")
    coffee.clock.advance(process.config.stopwaitsecs + 4)
    assert onwait() is NOT_DONE_YET  # still inside stopwaitsecs + 5 s of grace
    coffee.clock.advance(2)
    with pytest.raises(RPCError) as info:
        onwait()
    assert info.value.code == Faults.FAILED and "did not stop in time" in info.value.text
    assert "STOPPING" in info.value.text and not process.spawned


def answer(request: DummyRequest):
    """The XML-RPC answer supervisor's producer pushed onto the request."""
    assert request._error is None  # not an HTTP 500
    [body] = request.producers
    return xmlrpc.client.loads(body)[0][0]


def test_deferred_restart_through_supervisors_http_producer(coffee):
    """The callback plugs into supervisor's DeferredXMLRPCResponse (what the HTTP channel
    polls every ``delay`` seconds): success and time-out both become XML-RPC answers."""
    process = coffee.supervisord.process("architect")
    process.slow_stop = True
    request = DummyRequest("/RPC2", None, None, None)
    response = DeferredXMLRPCResponse(request, coffee.call("restartAgent", "architect"))
    assert response.more() is NOT_DONE_YET and request.producers == []
    process.reaped()
    response.more()
    assert answer(request) is True

    process = coffee.supervisord.process("code_developer")
    process.slow_stop = True
    request = DummyRequest("/RPC2", None, None, None)
    response = DeferredXMLRPCResponse(request, coffee.call("restartAgent", "code_developer"))
    coffee.clock.advance(process.config.stopwaitsecs + 6)
    response.more()
    with pytest.raises(xmlrpc.client.Fault) as info:
        answer(request)
    assert info.value.faultCode == Faults.FAILED


def test_restart_spawn_error_is_supervisors_fault(coffee):
    process = coffee.supervisord.process("assistant")
    process.state = ProcessStates.EXITED
    process.spawn_error = "too many open files"
    assert coffee.fault("restartAgent", "assistant").code == Faults.SPAWN_ERROR
    assert coffee.queue.restart_state("assistant")["given_up"] is False  # cleared before


def test_restart_of_an_agent_missing_from_supervisord(coffee):
    """team.yaml has it but the running config does not (not regenerated and reread yet)."""
    del coffee.supervisord.process_groups["assistant"]
    error = coffee.fault("restartAgent", "assistant")
    assert error.code == Faults.BAD_NAME and "regenerate" in error.text
    assert manual_restarts(coffee, "assistant") == []


@pytest.mark.parametrize("name,code", [("nobody", Faults.BAD_NAME), ({}, Faults.BAD_ARGUMENTS),
                                       (HUGE, Faults.BAD_NAME)], ids=["unknown", "struct", "huge"])
def test_restart_refuses_bad_names(coffee, name, code):
    assert coffee.fault("restartAgent", name).code == code


# --- requeue when supervisord reaps an agent -------------------------------------------------

def notify_state(coffee: Coffee, event_class, name: str, group_name: str | None = None,
                 from_state: int = ProcessStates.RUNNING) -> None:
    """Publish a process-state event the way supervisord's Subprocess.change_state does."""
    process = coffee.supervisord.process(name, group_name)
    events.notify(event_class(process, from_state, expected=False))


def requeued_events(coffee: Coffee) -> list[dict]:
    return [e for e in coffee.queue.events(limit=1000) if e["kind"] == "requeued"]


@pytest.mark.parametrize("event_class", [events.ProcessStateExitedEvent,
                                         events.ProcessStateStoppedEvent,
                                         events.ProcessStateBackoffEvent])
def test_reaped_agent_tasks_are_requeued_at_once(coffee, event_class):
    held = in_progress(coffee, "assistant")
    other = in_progress(coffee, "architect")
    notify_state(coffee, event_class, "assistant")
    assert (coffee.task(held)["status"], coffee.task(held)["claimed_by"]) == ("pending", None)
    assert coffee.task(other)["status"] == "in_progress"  # only the dead agent's tasks
    [event] = requeued_events(coffee)
    assert event["agent"] == "assistant"
    assert event["detail"] == {"count": 1, "by": "supervisord"}
    assert [t.id for t in coffee.queue.claim("assistant", 1)] == [held]


@pytest.mark.parametrize("event_class", [events.ProcessStateRunningEvent,
                                         events.ProcessStateStartingEvent,
                                         events.ProcessStateStoppingEvent,
                                         events.ProcessStateFatalEvent])
def test_other_state_changes_leave_tasks_alone(coffee, event_class):
    held = in_progress(coffee, "assistant")
    notify_state(coffee, event_class, "assistant")
    assert coffee.task(held)["status"] == "in_progress"
    assert requeued_events(coffee) == []


def test_requeue_without_held_tasks_records_nothing(coffee):
    notify_state(coffee, events.ProcessStateExitedEvent, "assistant")
    assert requeued_events(coffee) == []


def test_programs_that_are_not_team_agents_are_ignored(coffee):
    """The watchdog listener, or an agent's name reused inside another group, is not the
    agent: its death must not requeue the agent's work."""
    held = in_progress(coffee, "assistant")
    coffee.supervisord.add_program("watchdog")
    notify_state(coffee, events.ProcessStateExitedEvent, "watchdog")
    coffee.supervisord.add_program("assistant", group_name="pool")
    notify_state(coffee, events.ProcessStateExitedEvent, "assistant", group_name="pool")
    assert coffee.task(held)["status"] == "in_progress"


def test_requeue_failure_is_logged_never_raised(supervisor_globals):
    """The handler runs inside supervisord's state machine: a database it cannot use is
    logged and left to the watchdog's fallback requeue."""
    with temp_root() as root:
        team = write_team(root, AGENTS, database_path="data/broken.db")
        with open(team.database_url, "w") as f:
            f.write("this is not a database " * 100)
        supervisord = FakeSupervisord(team.names)
        build(team, supervisord, real_time_clock())
        process = supervisord.process("assistant")
        events.notify(events.ProcessStateExitedEvent(process, ProcessStates.RUNNING, False))
        assert [line for line in supervisord.logged if "requeue of assistant left to the watchdog" in line]


def test_supervisord_stopping_closes_the_queue_and_ends_requeues(coffee):
    held = in_progress(coffee, "assistant")
    coffee.call("getQueueStats")  # the interface's connection is open
    assert coffee.iface._queue is not None
    events.notify(events.SupervisorStoppingEvent())
    assert coffee.iface._queue is None
    notify_state(coffee, events.ProcessStateExitedEvent, "assistant")
    assert coffee.task(held)["status"] == "in_progress"  # the agent requeues its own
    assert coffee.fault("getQueueStats").code == Faults.SHUTDOWN_STATE
    assert coffee.iface._queue is None  # and it was not reopened


# --- task control ------------------------------------------------------------------------------

def test_cancel_then_retry_a_task_and_read_it_back(coffee):
    task_id = in_progress(coffee, "assistant")
    assert coffee.iface.cancelTask(task_id) == "in_progress"
    task = coffee.iface.getTask(task_id)
    assert task["status"] == "cancelled" and task["id"] == task_id
    assert_xmlrpc_safe(task)
    assert coffee.iface.retryTask(task_id) == "cancelled"
    assert coffee.iface.getTask(task_id)["status"] == "pending"
    # the agent's late completion of the cancelled attempt changed nothing
    assert coffee.queue.mark_completed(task_id, {"late": True}, agent="assistant") is False


@pytest.mark.parametrize("method, args, code", [
    ("getTask", (999999,), Faults.BAD_ARGUMENTS),
    ("cancelTask", (999999,), Faults.BAD_ARGUMENTS),
    ("getTask", ("1",), Faults.BAD_ARGUMENTS),
    ("retryTask", (-1,), Faults.BAD_ARGUMENTS),
    ("pauseAgent", ("nobody",), Faults.BAD_NAME),
    ("pauseAgent", ("assistant", 5), Faults.BAD_ARGUMENTS),
    ("resumeAgent", ("nobody",), Faults.BAD_NAME),
])
def test_task_control_refuses_bad_input(coffee, method, args, code):
    with pytest.raises(RPCError) as info:
        getattr(coffee.iface, method)(*args)
    assert info.value.code == code


def test_retry_of_a_completed_task_is_failed(coffee):
    task_id = in_progress(coffee, "assistant")
    coffee.queue.mark_completed(task_id, {"ok": 1}, agent="assistant")
    with pytest.raises(RPCError) as info:
        coffee.iface.retryTask(task_id)
    assert info.value.code == Faults.FAILED and "completed" in info.value.text


def test_pause_holds_claims_until_resume(coffee):
    task_id = coffee.queue.send("ci", "assistant", "job", {})
    assert coffee.iface.pauseAgent("assistant", "budget") is True
    assert coffee.queue.claim("assistant", 1) == []
    assert coffee.iface.resumeAgent("assistant") is True
    assert coffee.iface.resumeAgent("assistant") is False
    assert [t.id for t in coffee.queue.claim("assistant", 1)] == [task_id]


# --- a sick database (issue 18) ---------------------------------------------------------------

def test_team_status_shows_the_processes_and_one_database_line_when_it_cannot_open(
        supervisor_globals):
    with temp_root() as root:
        team = write_team(root, AGENTS, database_path="data/broken.db")
        with open(team.database_url, "w") as f:
            f.write("this is not a database " * 100)
        clock = FakeClock()
        iface = build(team, FakeSupervisord(team.names), clock)
        status = iface.getTeamStatus()
        assert [a["name"] for a in status["agents"]] == ["architect", "code_developer",
                                                         "assistant"]
        assert status["database"] == "DatabaseError: file is not a database"
        assert "restarts" not in status["agents"][0]
        assert_xmlrpc_safe(status)
        # Not tried again at once: a database that failed fails fast for OPEN_RETRY seconds.
        fault = pytest.raises(RPCError, iface.getQueueStats).value
        assert fault.code == Faults.FAILED and "file is not a database" in fault.text
        os.unlink(team.database_url)
        clock.advance(rpcqueue.OPEN_RETRY)
        assert "database" not in iface.getTeamStatus()  # a good file now: back at once
        iface._queue.close()


def test_a_deleted_database_file_is_reported_and_a_replaced_one_reopened(coffee):
    coffee.call("getQueueStats")
    path = coffee.team.database_url
    os.link(path, path + ".kept")
    os.unlink(path)
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    status = coffee.iface.getTeamStatus()
    assert "was deleted while open" in status["database"] and len(status["agents"]) == 3
    fault = coffee.fault("sendMessage", "ci", "assistant", "question", {})
    assert fault.code == Faults.FAILED and "was deleted while open" in fault.text
    os.link(path + ".kept", path)  # the same file back: nothing to reopen
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    assert "database" not in coffee.iface.getTeamStatus()
    os.unlink(path)  # and a sender makes a new file there (without the old file's WAL)
    with MessageQueue(path, agents=coffee.team.names) as other:
        other.send("ci", "assistant", "question")
    coffee.queue.reopen()  # the test's own connection (this process) follows too
    coffee.clock.advance(rpcqueue.FILE_CHECK_EVERY)
    assert coffee.iface.getQueueStats()["assistant"]["pending"] == 1  # the new file's task
    logged = "\n".join(coffee.supervisord.logged)
    assert logged.count("was deleted while open") == 1 and "reopening it" in logged
