#!/usr/bin/env python3
"""A stand-in for a coding CLI (``claude -p --output-format json``): no network, no model.

It reads the prompt from stdin, or from its last argument with ``--prompt-via arg``; streams
progress on stderr; prints the JSON result the ``claude`` preset reads, with the cost and
tokens its options say. The prompt steers it, so a task's content can ask for trouble:

    FAKE-FAIL                 exit 1 with an error on stderr
    FAKE-ERROR                print a result with is_error: true
    FAKE-GARBAGE              print text that is no JSON
    FAKE-RATELIMIT[=EPOCH]    print claude's usage-limit message (with its reset time), exit 1
    FAKE-SLEEP=SECONDS        take that long (printing progress every second)
    FAKE-TOUCH=NAME           create NAME in its working directory (left uncommitted)

``--send TYPE`` makes the answer end in a fenced JSON block asking for a follow-up of that
type (routed by the team's ``handles``); ``--log FILE`` appends one JSON line per run: argv,
prompt, cwd, the files there, the git branch, the session it resumed.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import sys
import time
import uuid


def options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--cost", type=float, default=0.01)
    parser.add_argument("--tokens-in", type=int, default=100)
    parser.add_argument("--tokens-out", type=int, default=50)
    parser.add_argument("--cache-read", type=int, default=0)
    parser.add_argument("--cache-write", type=int, default=0)
    parser.add_argument("--prompt-via", choices=("stdin", "arg"), default="stdin")
    parser.add_argument("--send", action="append", default=[])
    parser.add_argument("--log")
    parser.add_argument("--resume")
    return parser.parse_known_args(argv)


def directive(prompt: str, name: str) -> str | None:
    """``FAKE-NAME`` → "", ``FAKE-NAME=value`` → value, absent → None."""
    match = re.search(rf"FAKE-{name}(?:=([\w./-]+))?", prompt)
    return None if match is None else (match.group(1) or "")


def branch() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def log_run(path: str, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record) + "\n")


def answer(prompt: str, sends: list[str]) -> str:
    first = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    text = f"Done: {first[:200]}"
    if sends:
        spec = re.search(r"SPEC-\d+", prompt)
        follow_ups = [{"recipient": None, "type": t,
                       "content": {"spec_id": spec.group(0) if spec else "SPEC-0"}}
                      for t in sends]
        text += "\n\n```json\n" + json.dumps({"send": follow_ups}, indent=2) + "\n```\n"
    return text


def result(opts: argparse.Namespace, text: str, session: str, is_error: bool = False,
           cost: float | None = None) -> dict:
    return {"type": "result", "subtype": "success", "is_error": is_error, "duration_ms": 12,
            "num_turns": 1, "result": text, "session_id": session,
            "total_cost_usd": opts.cost if cost is None else cost,
            "usage": {"input_tokens": opts.tokens_in, "output_tokens": opts.tokens_out,
                      "cache_creation_input_tokens": opts.cache_write,
                      "cache_read_input_tokens": opts.cache_read}}


def main(argv: list[str]) -> int:
    opts, rest = options(argv)
    prompt = rest[-1] if opts.prompt_via == "arg" and rest else sys.stdin.read()
    session = opts.resume or f"fake-{uuid.uuid4().hex[:12]}"
    if opts.log:
        log_run(opts.log, {"argv": sys.argv, "prompt": prompt, "cwd": os.getcwd(),
                           "files": sorted(os.listdir(".")), "branch": branch(),
                           "resumed": opts.resume, "pid": os.getpid(), "at": time.time()})
    print("fake: reading the task", file=sys.stderr, flush=True)
    seconds = directive(prompt, "SLEEP")
    if seconds:
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            print("fake: still thinking", file=sys.stderr, flush=True)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    touch = directive(prompt, "TOUCH")
    if touch:
        with open(touch, "w") as f:
            f.write("uncommitted work\n")
    if directive(prompt, "FAIL") is not None:
        print("fake: something broke", file=sys.stderr)
        return 1
    if directive(prompt, "GARBAGE") is not None:
        print("this is not JSON at all")
        return 0
    reset = directive(prompt, "RATELIMIT")
    if reset is not None:
        message = "Claude AI usage limit reached" + (f"|{reset}" if reset else "")
        print(json.dumps(result(opts, message, session, is_error=True, cost=0.0)))
        return 1
    if directive(prompt, "ERROR") is not None:
        print(json.dumps(result(opts, "the model could not do it", session, is_error=True)))
        return 0
    print("fake: done", file=sys.stderr, flush=True)
    print(json.dumps(result(opts, answer(prompt, opts.send), session)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
