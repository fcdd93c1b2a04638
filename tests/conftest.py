"""Shared by tests/unit/ (no process) and tests/integration/ (real processes, all marked slow):
the watch that keeps processes out of the fast tier, and fixtures over tests/harness.py: a
throwaway project and a real supervisord booted from its generated config, always shut down
(and anything it left behind killed) afterwards."""
from __future__ import annotations

import json
import os

import pytest

from tests import processes
from tests.harness import boot_supervisord, temporary_project

processes.install()
# The tests' team files name their own databases: a COFFEE_DATABASE_URL in the environment of
# whoever runs them would override every one (the variable is for the pods of a cluster).
os.environ.pop("COFFEE_DATABASE_URL", None)


def pytest_collection_modifyitems(items):
    """tests/unit/ starts no process, so nothing there is slow (such a test goes to integration/)."""
    unit = [item.nodeid for item in items
            if "/unit/" in item.path.as_posix() and item.get_closest_marker("slow")]
    if unit:
        raise pytest.UsageError(f"{unit[0]} is marked slow but sits in tests/unit/: move it to "
                                "tests/integration/")


@pytest.fixture(autouse=True)
def _processes_only_in_slow_tests(request):
    """A test (with its function fixtures) that starts a process must be marked slow."""
    since = len(processes.started)
    yield
    message = processes.complaint(request.node.nodeid,
                                  request.node.get_closest_marker("slow") is not None, since)
    if message:
        pytest.fail(message, pytrace=False)


@pytest.fixture
def project():
    with temporary_project() as proj:
        yield proj


@pytest.fixture
def running_team(project):
    """The demo team (fast timings) booted with a plain ``supervisord -c``, all RUNNING."""
    project.write_team()
    boot_supervisord(project)
    project.wait_states("RUNNING", timeout=40)
    return project


@pytest.fixture
def reliability():
    """Record one row of the reliability table (docs/reliability.md) when the report runs.

    ``bench/reliability.py`` sets COFFEE_RELIABILITY_OUT and renders the rows it collects.
    """
    def record(scenario: str, load: str, faults: str, lost: int, duplicated: str,
               recovery: str) -> None:
        out = os.environ.get("COFFEE_RELIABILITY_OUT")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"scenario": scenario, "load": load, "faults": faults,
                                    "lost": lost, "duplicated": duplicated,
                                    "recovery": recovery}) + "\n")
    return record
