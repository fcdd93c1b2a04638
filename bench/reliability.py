"""Run the fault-injection tests and write docs/reliability.md from what they measured.

    .venv/bin/python bench/reliability.py

Each test records its row (scenario, load, faults, lost, duplicated, recovery) through the
``reliability`` fixture in tests/conftest.py; a failing test fails this command.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [f"tests/integration/test_{name}.py"
         for name in ("chaos", "reliability", "watchdog_live", "sick_storage", "db_identity",
                      "pg_sick", "clock_steps_live", "memory_limit_live", "http_access",
                      "web_live")]


def main() -> int:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
        out = tmp.name
    env = {**os.environ, "COFFEE_RELIABILITY_OUT": out}
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", *TESTS], cwd=ROOT, env=env)
    rows = [json.loads(line) for line in Path(out).read_text().splitlines() if line.strip()]
    os.unlink(out)
    if result.returncode != 0:
        print("reliability: a test failed; docs/reliability.md left unchanged", file=sys.stderr)
        return result.returncode
    lines = [
        "# Reliability",
        "",
        f"Latest run: {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.time() - started:.0f} s. Reproduce: `.venv/bin/python bench/reliability.py` "
        f"(the same tests run in CI).",
        "",
        "| scenario | load | faults injected | tasks lost | tasks duplicated | recovery |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['load']} | {r['faults']} | {r['lost']} | "
                     f"{r['duplicated']} | {r['recovery']} |")
    lines += [
        "",
        "\"Duplicated\" counts completions and follow-up messages, which the queue makes "
        "exactly-once (a task's follow-ups are written in its completion's transaction). "
        "\"Re-runs\" are handler executions cut off by a kill and run again: execution is at "
        "least once, so outside effects should be keyed by the task id.",
        "",
    ]
    (ROOT / "docs" / "reliability.md").write_text("\n".join(lines))
    print(f"wrote docs/reliability.md ({len(rows)} scenarios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
