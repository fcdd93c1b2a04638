"""An in-process stand-in for supervisord, built from supervisor's own test doubles.

supervisor ships ``supervisor.tests.base`` in its wheel (DummySupervisor, DummyOptions,
DummyPConfig, DummyPGroupConfig, DummyProcessGroup, DummyProcess); its ``test_rpcinterfaces``
drives ``SupervisorNamespaceRPCInterface`` against them.  We do the same for ``coffee.*``: every
agent is its own one-process group, as the generated config makes it, and the real
``supervisor.*`` interface that ``coffee.restartAgent`` calls runs on top unchanged.

Two things the dummies lack are added here: ``reap()`` (startProcess/stopProcess call it), and a
process that can take its time to stop (``slow_stop``) or fail to spawn (``spawn_error``), so
restartAgent's deferred path and its fault path can be driven by hand.
"""
from __future__ import annotations

import itertools

from supervisor.states import ProcessStates, SupervisorStates
from supervisor.tests.base import (DummyOptions, DummyPConfig, DummyPGroupConfig, DummyProcess,
                                   DummyProcessGroup, DummySupervisor)

_pids = itertools.count(70000)


class FakeProcess(DummyProcess):
    """A DummyProcess whose stop and spawn behave like a real Subprocess where it matters.

    ``slow_stop``: stop() only sends the signal and leaves the process STOPPING; the test calls
    ``reaped()`` when "the child exits" (supervisord's reap() → finish() → STOPPED).
    ``spawn_error``: spawn() fails the way Subprocess.spawn does (spawnerr set, BACKOFF).
    A successful spawn goes to STARTING (not straight to RUNNING as DummyProcess does).
    """

    slow_stop = False
    spawn_error = ""

    def stop(self):
        self.stop_called = True
        if self.slow_stop:
            self.state = ProcessStates.STOPPING
            return None
        self.state = ProcessStates.STOPPED
        self.pid = 0
        return None

    def reaped(self) -> None:
        self.state = ProcessStates.STOPPED
        self.pid = 0

    def spawn(self):
        self.spawned = True
        if self.spawn_error:
            self.spawnerr = self.spawn_error
            self.state = ProcessStates.BACKOFF
            return None
        self.spawnerr = None
        self.state = ProcessStates.STARTING
        self.pid = next(_pids)
        return self.pid


class FakeSupervisord(DummySupervisor):
    """``supervisord`` as the rpcinterface factory receives it: options (logger, mood,
    get_pid) and ``process_groups`` {name: group with .processes {name: process}}."""

    def __init__(self, names, state: int = ProcessStates.RUNNING, stopwaitsecs: int = 5):
        options = DummyOptions()
        super().__init__(options=options, state=SupervisorStates.RUNNING)
        self.reaps = 0
        for name in names:
            self.add_program(name, state, stopwaitsecs)

    def add_program(self, name: str, state: int = ProcessStates.RUNNING,
                    stopwaitsecs: int = 5, group_name: str | None = None) -> FakeProcess:
        config = DummyPConfig(self.options, name, "/bin/true", stopwaitsecs=stopwaitsecs)
        group_name = group_name or name
        group = self.process_groups.get(group_name)
        if group is None:
            group = DummyProcessGroup(DummyPGroupConfig(self.options, group_name,
                                                        pconfigs=[config]))
            group.processes = {}
            self.process_groups[group_name] = group
        process = FakeProcess(config, state)
        process.group = group
        if state in (ProcessStates.RUNNING, ProcessStates.STARTING, ProcessStates.STOPPING):
            process.pid = next(_pids)
        group.processes[name] = process
        return process

    def process(self, name: str, group_name: str | None = None) -> FakeProcess:
        return self.process_groups[group_name or name].processes[name]

    def reap(self):
        self.reaps += 1

    @property
    def logged(self) -> list[str]:
        return self.options.logger.data
