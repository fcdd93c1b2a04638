"""The rig for coffee.* in-process (test_rpc_fast.py and its topic files).

``make_coffee_rpcinterface(supervisord, team=...)`` is called exactly as supervisord's
``[rpcinterface:coffee]`` section does, with supervisor's own test doubles for supervisord
(see tests/fake_supervisord.py) and a real MessageQueue on a throwaway SQLite file: the queue
is never faked.  ``VALID_CALLS`` holds one valid call per coffee.* method.
"""
from __future__ import annotations

import inspect
import os
import signal
from dataclasses import dataclass

import pytest
from supervisor import events
from supervisor.xmlrpc import RPCError

from coffee_team.rpc import interface as rpcinterface
from coffee_team.rpc import signals as rpcsignals
from coffee_team.queue import MessageQueue
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
    "listApprovals": (),
    "decideApproval": (1, "approve", "ana"),
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
