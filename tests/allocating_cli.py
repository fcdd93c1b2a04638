"""A command handler that allocates memory: a task of type "grow" takes ``CHUNK_MB`` (argv[1],
default 8) MB at a time, every page touched, until it is stopped; it prints "allocated N MB"
on stderr after each chunk (the agent's log keeps the last one). At ``MAX_MB`` (argv[2],
default 1000) it gives up and exits 3, so a guard that never fires fails the test instead of
exhausting the machine. Any other task is answered at once with {"ok": true}. Used by
tests/integration/test_memory_limit_live.py."""
from __future__ import annotations

import json
import sys


def main() -> int:
    task = json.loads(sys.stdin.read() or "{}")
    if task.get("type") != "grow":
        print(json.dumps({"ok": True}))
        return 0
    chunk = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    most = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    held, total = [], 0
    while total < most:
        block = bytearray(chunk << 20)
        block[::4096] = b"\1" * len(block[::4096])  # touch every page: RSS, not just address space
        held.append(block)
        total += chunk
        print(f"allocated {total} MB", file=sys.stderr, flush=True)
    print(f"never stopped: {total} MB allocated", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
