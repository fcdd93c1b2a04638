"""The Python interpreter supervisord runs every program with, and whether it can.

``team.python`` when the team file sets it; otherwise the interpreter coffee-team itself runs
from, so a tool install (pipx, uv tool, a venv outside the project) needs no setting. Inside
the project it is written relative to the project root (the generated config then says
``%(here)s/../.venv/bin/python`` and stays the same in every clone), outside it absolute.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .spec import Team

IMPORT_TIMEOUT = 30.0


def running_python() -> Path:
    """``sys.executable``, named ``python`` when that is the same file beside it: a console
    script runs ``bin/python3``, yet ``gen-config`` must write the same config however it
    was run."""
    exe = Path(sys.executable)
    plain = exe.with_name("python")
    try:
        if plain != exe and os.path.samefile(plain, exe):
            return plain
    except OSError:
        pass
    return exe


def program_python(team: Team) -> str:
    """The interpreter as the generated config should name it: ``team.python`` as written,
    else the running one (``python_for``)."""
    return team.settings.python or python_for(team.root)


def python_for(root: Path) -> str:
    """The running interpreter relative to the project ``root`` when it lives inside it,
    else absolute."""
    exe = running_python()
    # the directory resolved, not the file: a venv's python is a symlink to the base install
    directory = Path(os.path.realpath(exe.parent))
    try:
        return (directory.relative_to(root.resolve()) / exe.name).as_posix()
    except ValueError:
        return str(exe)


def is_running(path: str | os.PathLike[str]) -> bool:
    """Is ``path`` the interpreter running this code? The same file in the same directory:
    a venv's python is a link to the base install's, yet only the venv has our packages."""
    exe = Path(sys.executable)
    try:
        return (os.path.realpath(Path(path).parent) == os.path.realpath(exe.parent)
                and os.path.samefile(path, exe))
    except OSError:
        return False


def problem(team: Team) -> str | None:
    """One line if the interpreter the programs would run with cannot run them, else None."""
    configured = team.settings.python
    path = team.resolve(configured) if configured else None
    if path is None or is_running(path):
        return None  # this very interpreter: it runs coffee-team, so it imports it
    fix = (f"install coffee-team into it, or remove team.python to use the interpreter "
           f"coffee-team runs from ({running_python()})")
    if not path.is_file() or not os.access(path, os.X_OK):
        return f"{team.path}: team.python: {path} does not exist or is not executable; {fix}"
    try:
        done = subprocess.run([str(path), "-c", "import coffee_team"], capture_output=True,
                              text=True, timeout=IMPORT_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{team.path}: team.python: {path} cannot run: {exc}; {fix}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"{team.path}: team.python: {path} cannot import coffee_team ({last}); {fix}"
    return None
