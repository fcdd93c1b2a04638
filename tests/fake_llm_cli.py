#!/usr/bin/env python3
"""A stand-in for Claude Code in print mode (``claude -p``): no network, no model.

Written from Claude Code's documentation. ``--output-format json`` prints one result object at
the end (the fake's default when no format is given, so older tests need no flag);
``--output-format stream-json --verbose`` prints JSON lines as it works: a ``system`` init
event (``session_id``, ``cwd``, ``model``), per turn ``assistant`` events (one content block
each: ``text`` or ``tool_use`` {name, input}; the events of one API message share its ``id``
and ``usage``), a ``user`` event with the ``tool_result`` (``is_error``), and a final
``result`` event (``subtype``, ``is_error``, ``result``, ``total_cost_usd``, ``usage``,
``session_id``, ``num_turns``, ``duration_ms``). Like Claude Code it refuses stream-json
without ``--verbose``. ``--max-budget-usd`` is checked between turns: past it the run ends
with subtype ``error_max_budget_usd``.

It reads the prompt from stdin, or from its last argument with ``--prompt-via arg``. The cost
and tokens its options give are the run's totals, spread over its turns (``--steps``, events
``--pace`` seconds apart). The prompt steers it, so a task's content can ask for trouble:

    FAKE-FAIL                 exit 1 with an error on stderr
    FAKE-ERROR                end with an error result (is_error: true)
    FAKE-GARBAGE              print text that is no JSON
    FAKE-RATELIMIT[=EPOCH]    end with claude's usage-limit message (its reset time), exit 1
    FAKE-SLEEP=SECONDS        take that long first (progress on stderr every second)
    FAKE-STEPS=N, FAKE-PACE=SECONDS   override --steps and --pace
    FAKE-TOUCH=NAME           create NAME in its working directory (left uncommitted)
    FAKE-COMMIT=NAME          write "<branch> <FAKE-TEXT or work>" to NAME and commit it
    FAKE-PUSH                 a Bash call ``git push origin main``
    FAKE-WRITE=PATH           a Write call of PATH
    FAKE-MCP-SEND=TYPE        a call of the coffee MCP server's send_task (routed by TYPE)
    FAKE-SEND-MANY=N          the answer asks for N follow-ups (its first --send type, else
                              job; content {"n": i}), in one compact fenced JSON block
    FAKE-SEND-TO=NAME         one more follow-up, addressed to NAME (the first --send type)
    FAKE-LINGER=SECONDS       leave a process behind: double-forked, in its own session
                              (setsid), holding stdout and stderr open, sleeping that long;
                              its PID is logged (--log) as {"lingering": PID}

Those calls go through ``--allowedTools``, ``--mcp-config`` and ``--permission-prompt-tool``
as Claude Code's are (tests/fake_claude_mcp.py, the MCP SDK's own client); each call's
outcome is logged (``--log``) as a ``calls`` record and shown in the answer.

``--send TYPE`` makes the answer end in a fenced JSON block asking for a follow-up of that
type (routed by the team's ``handles``); ``--review`` makes it a reviewer, whose answer ends
in a fenced ``{"verdict": ...}`` block: request_changes when the review's diff stat names a
NEEDS-WORK file, else approve; ``--resolve`` makes it fix what a ``merge_failed`` task
reports: it merges the target branch named in the task (a conflict resolved by keeping both
sides' lines), renames NEEDS-WORK files to reworked, turns every BREAK in its *.txt files into
"fixed", and commits; ``--log FILE`` appends one JSON line per run: argv,
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

TOOLS = [("Read", {"file_path": "README.md"}), ("Edit", {"file_path": "src/cli.py",
                                                        "old_string": "a", "new_string": "b"}),
         ("Bash", {"command": "pytest -q", "description": "Run the tests"})]


def options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-p", "--print", action="store_true")
    parser.add_argument("--output-format", choices=("text", "json", "stream-json"),
                        default="json")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--max-budget-usd", type=float)
    parser.add_argument("--cost", type=float, default=0.01)
    parser.add_argument("--tokens-in", type=int, default=100)
    parser.add_argument("--tokens-out", type=int, default=50)
    parser.add_argument("--cache-read", type=int, default=0)
    parser.add_argument("--cache-write", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--prompt-via", choices=("stdin", "arg"), default="stdin")
    parser.add_argument("--send", action="append", default=[])
    parser.add_argument("--review", action="store_true")
    parser.add_argument("--resolve", action="store_true")
    parser.add_argument("--log")
    parser.add_argument("--resume")
    parser.add_argument("--mcp-config", action="append", default=[])
    parser.add_argument("--allowedTools", action="append", default=[])
    parser.add_argument("--permission-prompt-tool")
    return parser.parse_known_args(argv)


def planned_calls(prompt: str) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    if directive(prompt, "PUSH") is not None:
        calls.append(("Bash", {"command": "git push origin main",
                               "description": "Push the work"}))
    if directive(prompt, "WRITE"):
        calls.append(("Write", {"file_path": directive(prompt, "WRITE"), "content": "x\n"}))
    if directive(prompt, "MCP-SEND"):
        calls.append(("mcp__coffee__send_task", {"recipient": "", "type": directive(
            prompt, "MCP-SEND"), "content": {"from": "a run"}}))
    return calls


def directive(prompt: str, name: str) -> str | None:
    """``FAKE-NAME`` → "", ``FAKE-NAME=value`` → value, absent → None."""
    match = re.search(rf"FAKE-{name}(?![\w-])(?:=([\w./-]+))?", prompt)
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


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, timeout=60)


def commit(name: str, text: str) -> None:
    """Some work on the branch checked out here: one file written and committed."""
    with open(name, "w") as f:
        f.write(f"{branch()} {text}\n")
    git("add", name)
    git("commit", "-qm", f"{branch()}: {name}")


def resolve(prompt: str) -> None:
    """What a merge_failed task asks: the target merged in (both sides of a conflict kept),
    the broken files fixed, committed."""
    target = re.search(r'"into": "([^"]+)"', prompt)
    if target is not None and git("merge", "--no-edit", target.group(1)).returncode != 0:
        for name in git("diff", "--name-only", "--diff-filter=U").stdout.split():
            with open(name) as f:
                kept = [line for line in f if not line.startswith(("<<<<<<<", "=======",
                                                                   ">>>>>>>"))]
            with open(name, "w") as f:
                f.writelines(kept)
            git("add", name)
    for name in git("ls-files", "*.txt").stdout.split():  # its work, not the project's code
        if "NEEDS-WORK" in name:
            git("mv", name, name.replace("NEEDS-WORK", "reworked"))
            continue
        with open(name) as f:
            text = f.read()
        if "BREAK" in text:
            with open(name, "w") as f:
                f.write(text.replace("BREAK", "fixed"))
    git("commit", "-qam", f"{branch()}: fixed what the merge queue reported", "--allow-empty")


def linger(seconds: float, log: str | None) -> None:
    """A descendant that outlives us: it left our session, our stdout and stderr still open."""
    if os.fork() != 0:
        os.waitpid(-1, 0)  # the middle one exits at once: the sleeper is an orphan
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    if log:
        log_run(log, {"lingering": os.getpid()})
    time.sleep(seconds)
    os._exit(0)


def many(prompt: str, sends: list[str]) -> str:
    """The fenced block of FAKE-SEND-MANY and FAKE-SEND-TO, or ''."""
    kind = sends[0] if sends else "job"
    count, to = directive(prompt, "SEND-MANY"), directive(prompt, "SEND-TO")
    follow_ups = [{"recipient": None, "type": kind, "content": {"n": n}}
                  for n in range(int(count or 0))]
    if to:
        follow_ups.insert(len(follow_ups) // 2, {"recipient": to, "type": kind,
                                                  "content": {"to": to}})
    return "\n\n```json\n" + json.dumps({"send": follow_ups}) + "\n```\n" if follow_ups else ""


def answer(prompt: str, sends: list[str], review: bool = False) -> str:
    first = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    text = f"Done: {first[:200]}"
    if directive(prompt, "SEND-MANY") is not None or directive(prompt, "SEND-TO") is not None:
        return text + many(prompt, sends)
    if review:  # what the change does, as its diff stat says: the commits' net effect
        stat = re.search(r'"diffstat": "((?:[^"\\]|\\.)*)"', prompt)
        verdict = ({"verdict": "request_changes", "comments": "NEEDS-WORK: rename it"}
                   if stat and "NEEDS-WORK" in stat.group(1) else {"verdict": "approve"})
        return text + "\n\n```json\n" + json.dumps(verdict) + "\n```\n"
    if sends:
        spec = re.search(r"SPEC-\d+", prompt)
        follow_ups = [{"recipient": None, "type": t,
                       "content": {"spec_id": spec.group(0) if spec else "SPEC-0"}}
                      for t in sends]
        text += "\n\n```json\n" + json.dumps({"send": follow_ups}, indent=2) + "\n```\n"
    return text


def share(total: float, n: int, k: int) -> float:
    """Turn k's part of a total spread over n turns (the last takes the rest)."""
    part = total / n if isinstance(total, float) else total // n
    return total - part * (n - 1) if k == n - 1 else part


class Run:
    def __init__(self, opts: argparse.Namespace, session: str, steps: int, pace: float):
        self.opts, self.session, self.steps, self.pace = opts, session, max(1, steps), pace
        self.stream = opts.output_format == "stream-json"
        self.turns = 0
        self.spent = {"cost": 0.0, "input_tokens": 0, "output_tokens": 0,
                      "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}

    def emit(self, event: dict) -> None:
        if self.stream:
            print(json.dumps(event), flush=True)
            time.sleep(self.pace)

    def turn(self, k: int, text: str, tool: tuple[str, dict] | None) -> None:
        """One API message (its blocks as separate events sharing id and usage), its tool's
        result; the turn's share of the run's cost and tokens."""
        o, n = self.opts, self.steps
        usage = {"input_tokens": share(o.tokens_in, n, k), "output_tokens": share(o.tokens_out, n, k),
                 "cache_read_input_tokens": share(o.cache_read, n, k),
                 "cache_creation_input_tokens": share(o.cache_write, n, k)}
        for key, value in usage.items():
            self.spent[key] += value
        self.spent["cost"] += share(float(o.cost), n, k)
        self.turns += 1
        blocks = [{"type": "text", "text": text}]
        if tool is not None:
            blocks.append({"type": "tool_use", "id": f"toolu_{k}", "name": tool[0],
                           "input": tool[1]})
        for block in blocks:
            self.emit({"type": "assistant", "session_id": self.session,
                       "parent_tool_use_id": None,
                       "message": {"id": f"msg_{k}", "type": "message", "role": "assistant",
                                   "model": "claude-fake", "content": [block],
                                   "stop_reason": None, "usage": usage}})
        if tool is not None:
            self.emit({"type": "user", "session_id": self.session, "parent_tool_use_id": None,
                       "message": {"role": "user", "content": [
                           {"type": "tool_result", "tool_use_id": f"toolu_{k}",
                            "content": "ok", "is_error": False}]}})

    def result(self, text: str | None, subtype: str = "success", is_error: bool = False,
               cost: float | None = None) -> dict:
        event = {"type": "result", "subtype": subtype, "is_error": is_error,
                 "duration_ms": 12, "duration_api_ms": 10, "num_turns": self.turns,
                 "session_id": self.session,
                 "total_cost_usd": round(self.spent["cost"], 10) if cost is None else cost,
                 "usage": {k: v for k, v in self.spent.items() if k != "cost"},
                 "permission_denials": []}
        if text is not None:
            event["result"] = text
        else:
            event["errors"] = [f"Reached maximum budget (${self.opts.max_budget_usd})"]
        return event

    def finish(self, event: dict) -> None:
        if self.opts.output_format == "text":
            print(event.get("result", ""))
        else:
            print(json.dumps(event), flush=True)


def main(argv: list[str]) -> int:
    opts, rest = options(argv)
    if opts.output_format == "stream-json" and not opts.verbose:
        print("Error: When using --print, --output-format=stream-json requires --verbose",
              file=sys.stderr)
        return 1
    prompt = rest[-1] if opts.prompt_via == "arg" and rest else sys.stdin.read()
    session = opts.resume or f"fake-{uuid.uuid4().hex[:12]}"
    if opts.log:
        log_run(opts.log, {"argv": sys.argv, "prompt": prompt, "cwd": os.getcwd(),
                           "files": sorted(os.listdir(".")), "branch": branch(),
                           "resumed": opts.resume, "pid": os.getpid(), "at": time.time()})
    run = Run(opts, session, int(directive(prompt, "STEPS") or opts.steps),
              float(directive(prompt, "PACE") or opts.pace))
    run.emit({"type": "system", "subtype": "init", "session_id": session, "cwd": os.getcwd(),
              "model": "claude-fake", "tools": [t for t, _ in TOOLS],
              "permissionMode": "default"})
    print("fake: reading the task", file=sys.stderr, flush=True)
    lingering = directive(prompt, "LINGER")
    if lingering:
        linger(float(lingering), opts.log)
    touch = directive(prompt, "TOUCH")
    if touch:  # before the sleep: a run killed while it sleeps leaves the file behind
        with open(touch, "w") as f:
            f.write("uncommitted work\n")
    seconds = directive(prompt, "SLEEP")
    if seconds:
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            print("fake: still thinking", file=sys.stderr, flush=True)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    written = directive(prompt, "COMMIT")
    if written:
        commit(written, directive(prompt, "TEXT") or "work")
    if opts.resolve and "merge_failed" in prompt:
        resolve(prompt)
    if directive(prompt, "FAIL") is not None:
        print("fake: something broke", file=sys.stderr)
        return 1
    calls = planned_calls(prompt)
    outcomes = ""
    if calls:
        import fake_claude_mcp
        records = fake_claude_mcp.run(calls, opts.mcp_config, opts.allowedTools,
                                      opts.permission_prompt_tool, run.emit, session)
        if opts.log:
            log_run(opts.log, {"calls": records, "pid": os.getpid()})
        outcomes = "\n" + "; ".join(f"{r['tool']}: {r['behavior']}" for r in records)
    if directive(prompt, "GARBAGE") is not None:
        print("this is not JSON at all")
        return 0
    reset = directive(prompt, "RATELIMIT")
    if reset is not None:
        message = "Claude AI usage limit reached" + (f"|{reset}" if reset else "")
        run.finish(run.result(message, "success", is_error=True, cost=0.0))
        return 1
    for k in range(run.steps - 1):
        tool = TOOLS[k % len(TOOLS)]
        run.turn(k, f"Step {k + 1}: {tool[0]} next.\nThinking it through.", tool)
        if opts.max_budget_usd is not None and run.spent["cost"] >= opts.max_budget_usd:
            run.finish(run.result(None, "error_max_budget_usd"))  # checked between turns
            return 0
    if directive(prompt, "ERROR") is not None:
        run.turn(run.steps - 1, "I could not do it.", None)
        run.finish(run.result("the model could not do it", "error_during_execution", True))
        return 0
    run.turn(run.steps - 1, answer(prompt, opts.send, opts.review) + outcomes, None)
    print("fake: done", file=sys.stderr, flush=True)
    run.finish(run.result(answer(prompt, opts.send, opts.review) + outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
