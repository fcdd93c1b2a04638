"""proctable.ProcessTable: one pass over /proc gives what psutil gives, process by process."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from coffee_team import proctable
from coffee_team.proctable import ProcessTable

pytestmark = pytest.mark.slow  # the tests here start processes


@pytest.fixture
def child():
    # its 20 MB allocated once it says so, not after a fixed 0.3 s: on a loaded machine the
    # interpreter may not even have started by then (its RSS still growing)
    proc = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(20 << 20);"
                             " print('ready', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"  # ("" if it exited without)
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("source", ["proc", "psutil"])
def test_the_table_agrees_with_psutil(child, source, monkeypatch):
    if source == "psutil":  # the portable path, as on a system without /proc
        monkeypatch.setattr(proctable, "_linux_procs", proctable._psutil_procs)
    table = ProcessTable.read()
    for pid in (os.getpid(), child.pid):
        proc, theirs = table.procs[pid], psutil.Process(pid)
        assert proc.ppid == theirs.ppid()
        assert abs(proc.started - theirs.create_time()) < 0.02
        assert abs(proc.rss - theirs.memory_info().rss) < 4 << 20
        times = theirs.cpu_times()
        assert abs(proc.cpu_seconds - (times.user + times.system)) < 0.5
    assert child.pid in table.children[os.getpid()]


def test_a_tree_sums_its_descendants(child):
    table = ProcessTable.read()
    now = time.time()
    mine, _ = table.tree_usage(child.pid, now)
    _, tree_mb = table.tree_usage(os.getpid(), now)
    alone_mb = table.procs[os.getpid()].rss / 2**20
    assert tree_mb >= alone_mb + 20  # the child's 20 MB count in its parent's tree
    assert table.tree_usage(2**22 + 7, now) == (0.0, 0.0)  # no such process
    assert mine >= 0.0
