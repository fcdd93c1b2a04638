"""A checkout as users get it: its wheel installed in a throwaway virtualenv.

Users install coffee-team from a wheel (pip, pipx, uv), not ``pip install -e``. An editable
install's ``__editable___coffee_team_*_finder`` .pth imports pathlib, urllib.parse,
ipaddress, fnmatch… into every interpreter of its venv at ``site`` (~8 ms), so a bare python
of that venv pays imports the agent then gets for free, and the agent/bare ratio flatters.
``install`` builds the checkout's wheel (from a copy of its package files, so no ``build/``
left in the checkout, nor stale files from an earlier build, ends up in it) and installs it,
with its dependencies, in a new venv of the running interpreter; pip byte-compiles what it
installs, as for a user.

    python = install(checkout, workdir)   # workdir/venv/bin/python, outside the checkout
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE_FILES = ("pyproject.toml", "README.md")


def install(checkout: Path, workdir: Path) -> Path:
    """``checkout``'s wheel installed in ``workdir/venv``; returns that venv's python. ~15 s."""
    src, wheels, venv = workdir / "src", workdir / "wheel", workdir / "venv"
    shutil.copytree(checkout / "coffee_team", src / "coffee_team", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in PACKAGE_FILES:
        shutil.copy2(checkout / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src))
    # the interpreter this benchmark runs on (a venv's python makes a venv of its base)
    _run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    _run(str(python), "-m", "pip", "install", "-q", str(next(wheels.glob("coffee_team-*.whl"))))
    shutil.rmtree(src)
    return python


def _run(*argv: str) -> None:
    """pip's own warnings (an index location it skips) only when it fails."""
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=clean_env())
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this process's venv, path or supervisord settings: a
    subprocess gets only what its own interpreter's ``site`` gives it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUPERVISOR_") and k not in ("PYTHONPATH", "VIRTUAL_ENV",
                                                            "PYTHONHOME")}
    env.update(extra)
    return env
