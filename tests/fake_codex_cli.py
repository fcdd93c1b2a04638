#!/usr/bin/env python3
"""A stand-in for ``codex exec --json [resume SESSION_ID] PROMPT``: no network, no model.

Written from openai/codex docs/exec.md: JSON Lines on stdout, ``thread.started``
(``thread_id``), ``turn.started``, ``item.started``/``item.completed`` with an ``item``
(``reasoning``, ``command_execution`` {command, exit_code, status}, ``file_change``
{changes: [{path, kind}], status}, ``agent_message`` {text}), ``turn.completed`` with
``usage`` {input_tokens, cached_input_tokens, output_tokens}; ``turn.failed`` {error}. The
prompt is the last argument, or stdin when it is ``-`` or missing. ``--steps`` commands run
``--pace`` seconds apart; the prompt's ``FAKE-FAIL`` ends the turn in ``turn.failed``, its
``FAKE-LINGER=SECONDS`` leaves a process behind holding stdout (as tests/fake_llm_cli.py's,
its PID logged to ``--log``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--tokens-in", type=int, default=1000)
    parser.add_argument("--cached", type=int, default=800)
    parser.add_argument("--tokens-out", type=int, default=50)
    parser.add_argument("--log")
    opts, rest = parser.parse_known_args(argv)
    rest = [a for a in rest if a != "exec"]
    thread = rest[rest.index("resume") + 1] if "resume" in rest else str(uuid.uuid4())
    prompt = rest[-1] if rest and rest[-1] != "-" and rest[-1] != thread else sys.stdin.read()

    def emit(event: dict) -> None:
        print(json.dumps(event), flush=True)
        time.sleep(opts.pace)

    lingering = re.search(r"FAKE-LINGER=([\d.]+)", prompt)
    if lingering:
        import fake_llm_cli
        fake_llm_cli.linger(float(lingering.group(1)), opts.log)
    emit({"type": "thread.started", "thread_id": thread})
    emit({"type": "turn.started"})
    emit({"type": "item.completed", "item": {"id": "item_0", "type": "reasoning",
                                             "text": "**Reading the task**"}})
    for k in range(opts.steps):
        command = {"id": f"item_c{k}", "type": "command_execution", "command": f"bash -lc 'make step{k}'",
                   "aggregated_output": "", "status": "in_progress"}
        emit({"type": "item.started", "item": command})
        emit({"type": "item.completed", "item": {**command, "aggregated_output": "ok\n",
                                                 "exit_code": 0, "status": "completed"}})
    emit({"type": "item.completed", "item": {"id": "item_f", "type": "file_change",
                                             "changes": [{"path": "src/cli.py", "kind": "update"}],
                                             "status": "completed"}})
    if "FAKE-FAIL" in prompt:
        emit({"type": "turn.failed", "error": {"message": "the model gave up"}})
        return 1
    emit({"type": "item.completed", "item": {"id": "item_m", "type": "agent_message",
                                             "text": f"Done: {prompt.strip()[:100]}"}})
    emit({"type": "turn.completed", "usage": {"input_tokens": opts.tokens_in,
                                              "cached_input_tokens": opts.cached,
                                              "output_tokens": opts.tokens_out}})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
