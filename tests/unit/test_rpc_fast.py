"""coffee.* in-process: the interface as supervisord builds it, against a fake supervisord.

``make_coffee_rpcinterface(supervisord, team=...)`` is called exactly as supervisord's
``[rpcinterface:coffee]`` section does, with supervisor's own test doubles for supervisord
(see tests/fake_supervisord.py) and a real MessageQueue on a throwaway SQLite file: the queue
is never faked.  Calls go straight to the methods, so each test takes milliseconds; what only
a real supervisord can show (HTTP, the unix socket, reloads, latency) stays in
test_rpcinterface.py.  Here: the namespace, getTeamStatus, sendMessage, getQueueStats and
listTasks; test_rpc_journal.py and test_rpc_control.py hold the rest (rig: tests/rpc_rig.py).

Every result is checked to survive supervisord's marshalling (no None, 32-bit ints, no
XML-illegal characters) and every fault to be one short line with supervisor's fault code.
"""
from __future__ import annotations

import json
import select
import os
import signal
import sqlite3
import time

import pytest
from supervisor import events
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import ProcessStates, SupervisorStates
from supervisor.xmlrpc import (Faults, RootRPCInterface, RPCError, SystemNamespaceRPCInterface,
                               traverse)

from coffee_team import heartbeat
from coffee_team.rpc import interface as rpcinterface, queue as rpcqueue
from coffee_team.rpc import signals as rpcsignals
from coffee_team.queue import MessageQueue
from tests.fake_supervisord import FakeSupervisord
from tests.fast_team import real_time_clock, temp_root, write_team
from tests.rpc_rig import (AGENTS, arity, build, Coffee, discard, HUGE, in_progress,
                           public_methods, QUEUE_SIZE, VALID_CALLS)
from tests.rpc_rig import coffee, supervisor_globals  # noqa: F401 (fixtures)


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
    # a process in the table: its uptime is the kernel's (which moves with the wall clock,
    # unlike supervisord's start stamp); the fake laststart is only the fallback
    from coffee_team.proctable import ProcessTable
    started = ProcessTable.read().procs[os.getpid()].started
    assert (row["state"], row["pid"]) == ("RUNNING", os.getpid())
    assert row["uptime_seconds"] == round(max(0.0, now - started), 1)
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
    zero = {"waiting": 0, "awaiting_approval": 0, "pending": 0, "in_progress": 0, "completed": 0,
            "failed": 0, "cancelled": 0}
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
