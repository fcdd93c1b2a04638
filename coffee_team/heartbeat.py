"""The heartbeat file: ``data/agent_status/<agent>_status.json``, its path, writer and reader.

The agent writes it (atomically, so readers see the old or the new file, never half of one);
the watchdog and ``coffee-team status`` read it. Keeping path, writer and reader here means
the three can never disagree about where the file is or what an unreadable one means.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from .layout import atomic_write_private

# atomic_write_private's temp name is per process: two threads of one agent writing at once
# would share it, so writes are serialised.
_WRITE_LOCK = threading.Lock()


def heartbeat_path(status_dir: Path, agent: str) -> Path:
    return Path(status_dir) / f"{agent}_status.json"


def write_heartbeat(status_dir: Path, agent: str, beat: dict[str, Any]) -> None:
    """Replace the agent's heartbeat file; OSError (e.g. an unwritable directory) propagates."""
    text = json.dumps(beat, indent=1) + "\n"
    with _WRITE_LOCK:
        atomic_write_private(heartbeat_path(status_dir, agent), text)


def read_heartbeat(status_dir: Path, agent: str) -> dict[str, Any]:
    """The agent's heartbeat, or {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(heartbeat_path(status_dir, agent).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_beat(beat: dict[str, Any]) -> float | None:
    """When the heartbeat was written (epoch seconds), or None if it does not say."""
    try:
        return float(beat["last_heartbeat"])
    except (KeyError, TypeError, ValueError):
        return None
