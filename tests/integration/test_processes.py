"""The watch behind "every test that starts a process is marked slow" (tests/processes.py)."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess

import pytest

from tests import processes


@pytest.mark.slow
def test_the_watch_sees_each_way_a_test_starts_a_process():
    since = len(processes.started)
    subprocess.run(["true"], check=True)
    subprocess.run([shutil.which("true")], check=True, close_fds=False)  # posix_spawn
    child = multiprocessing.get_context("fork").Process(target=os.getpid)
    child.start()
    child.join()
    assert processes.started[since:] == ["subprocess.fork_exec", "os.posix_spawn", "os.fork"]
    assert processes.complaint("t.py::t", False, since).startswith(
        "t.py::t starts a process (subprocess.fork_exec) but is not marked slow")
    assert processes.complaint("t.py::t", True, since) is None
    assert processes.complaint("t.py::t", False, len(processes.started)) is None
