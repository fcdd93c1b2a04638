"""The CLIs' event streams as pure rules: what each documented event shows (log line, current
step) and what a run has used so far. Events are written from the CLIs' documentation:
Claude Code's stream-json (headless mode, Agent SDK message types, cost tracking) and
codex's ``exec --json`` (openai/codex docs/exec.md, its sample output verbatim)."""
from __future__ import annotations

import json

import pytest

from coffee_team.llm import presets
from coffee_team.llm.reading import Reading, Usage
from coffee_team.llm.stream import (ClaudeStream, CodexStream, Step, claude_steps, codex_steps,
                                    one_line, tool_step)

CWD = "/work/project"


# --- one line, tool calls -------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"), ("\n\n  first\nsecond", "first"), ("tab\there", "tab here"),
    ("bell\x07 and \x1b[31mred", "bell  and  [31mred"), ("", ""), ("   \n\t\n", ""),
    (None, ""), (42, ""), ("x" * 200, "x" * 159 + "…"), ("line\u2028sep", "line"),
])
def test_one_line_is_the_first_non_blank_line_without_control_characters(text, expected):
    assert one_line(text) == expected


@pytest.mark.parametrize("name, args, expected", [
    ("Edit", {"file_path": f"{CWD}/src/cli.py", "old_string": "a", "new_string": "b"},
     "Edit src/cli.py"),
    ("Write", {"file_path": "/etc/hosts", "content": "x"}, "Write /etc/hosts"),
    ("Read", {"file_path": f"{CWD}/README.md"}, "Read README.md"),
    ("Read", {"file_path": f"{CWD}x/README.md"}, f"Read {CWD}x/README.md"),  # not under cwd
    ("NotebookEdit", {"notebook_path": f"{CWD}/a.ipynb"}, "NotebookEdit a.ipynb"),
    ("Bash", {"command": "pytest -q", "description": "Run the tests"}, "Bash: pytest -q"),
    ("Bash", {"command": "cd x &&\\\n make"}, "Bash: cd x &&\\"),
    ("Grep", {"pattern": "TODO", "path": f"{CWD}/src"}, "Grep src"),
    ("Grep", {"pattern": "TODO"}, "Grep: TODO"),
    ("Glob", {"pattern": "**/*.py"}, "Glob: **/*.py"),
    ("WebFetch", {"url": "https://example.org", "prompt": "summarise"},
     "WebFetch: https://example.org"),
    ("WebSearch", {"query": "stream-json"}, "WebSearch: stream-json"),
    ("Task", {"description": "find the bug", "prompt": "long"}, "Task: find the bug"),
    ("TodoWrite", {"todos": [{"content": "a"}]}, "TodoWrite"),
    ("mcp__github__create_issue", {"title": "x"}, "mcp__github__create_issue"),
    ("Bash", "not a mapping", "Bash"), (None, {}, "tool"), ("Bash", {"command": ""}, "Bash"),
    ("Bash", {"command": 7}, "Bash"),
    ("Bash", {"command": "y" * 300}, "Bash: " + "y" * 153 + "…"),
])
def test_a_tool_call_is_shown_by_its_name_and_what_it_is_about(name, args, expected):
    assert tool_step(name, args, CWD) == expected


# --- Claude Code ------------------------------------------------------------------------------

SESSION = "8c1f-42"


def init(**extra):
    return {"type": "system", "subtype": "init", "session_id": SESSION, "cwd": CWD,
            "model": "claude-sonnet-4-5", "tools": ["Bash", "Edit"], **extra}


def assistant(*blocks, msg_id="msg_1", tokens_in=10, tokens_out=5, cache_read=0,
              cache_write=0):
    return {"type": "assistant", "session_id": SESSION, "parent_tool_use_id": None,
            "message": {"id": msg_id, "type": "message", "role": "assistant",
                        "content": list(blocks),
                        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out,
                                  "cache_read_input_tokens": cache_read,
                                  "cache_creation_input_tokens": cache_write}}}


def text(t):
    return {"type": "text", "text": t}


def tool(name, **args):
    return {"type": "tool_use", "id": f"toolu_{name}", "name": name, "input": args}


def tool_result(content="fine", is_error=False):
    return {"type": "user", "session_id": SESSION, "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_x", "content": content,
         "is_error": is_error}]}}


def result(subtype="success", cost=0.25, **extra):
    return {"type": "result", "subtype": subtype, "is_error": subtype != "success",
            "duration_ms": 1200, "duration_api_ms": 900, "num_turns": 3, "result": "All done",
            "session_id": SESSION, "total_cost_usd": cost,
            "usage": {"input_tokens": 300, "output_tokens": 40,
                      "cache_creation_input_tokens": 7, "cache_read_input_tokens": 900},
            **extra}


@pytest.mark.parametrize("event, steps", [
    (init(), [Step(f"session {SESSION} started (claude-sonnet-4-5)", "starting")]),
    ({"type": "system", "subtype": "compact_boundary"}, [Step("system: compact_boundary")]),
    (assistant(text("I'll look at the CLI first.\n\nThen the tests.")),
     [Step("says: I'll look at the CLI first. (+1 lines)", "I'll look at the CLI first.")]),
    (assistant(text("  \n ")), []),
    (assistant(tool("Edit", file_path=f"{CWD}/src/cli.py")),
     [Step("Edit src/cli.py", "Edit src/cli.py")]),
    (assistant(text("Running them."), tool("Bash", command="pytest -q")),
     [Step("says: Running them.", "Running them."), Step("Bash: pytest -q", "Bash: pytest -q")]),
    (assistant({"type": "thinking", "thinking": "hmm", "signature": "s"}),
     [Step("thinking", "thinking")]),
    ({**assistant(text("API Error")), "error": "rate_limit"},
     [Step("says: API Error", "API Error"), Step("error: rate_limit")]),
    (tool_result("3 passed"), [Step("  -> ok")]),
    (tool_result([{"type": "text", "text": "Exit code 1\nFAILED test_x"}], is_error=True),
     [Step("  -> error: Exit code 1")]),
    (tool_result(None, is_error=True), [Step("  -> error")]),
    ({"type": "user", "message": {"role": "user", "content": "a plain prompt"}}, []),
    (result(), [Step("done: success, 3 turns, $0.2500, 340 tokens")]),
    (result("error_max_budget_usd"), [Step("stopped: error_max_budget_usd, 3 turns, $0.2500, "
                                           "340 tokens")]),
    ({"type": "stream_event", "event": {"type": "content_block_delta"}}, []),
    ({"type": "assistant", "message": "not a mapping"}, []),
    ({}, []),
])
def test_each_claude_event_shows_a_log_line_and_the_current_step(event, steps):
    assert claude_steps(event, CWD) == steps


def test_claude_usage_counts_each_api_message_once_at_its_highest_figures():
    stream = ClaudeStream()
    stream.feed(init())
    assert stream.cwd == CWD and stream.usage == Usage()
    # parallel tool uses: three events of one message, the same usage (the last one higher)
    stream.feed(assistant(text("a"), msg_id="msg_1", tokens_in=100, tokens_out=10))
    stream.feed(assistant(tool("Read", file_path="x"), msg_id="msg_1", tokens_in=100,
                          tokens_out=10))
    stream.feed(assistant(tool("Read", file_path="y"), msg_id="msg_1", tokens_in=100,
                          tokens_out=12, cache_read=50))
    stream.feed(tool_result())
    stream.feed(assistant(text("b"), msg_id="msg_2", tokens_in=20, tokens_out=3, cache_write=9))
    assert stream.usage == Usage(0.0, 120, 15, 50, 9)
    assert not stream.complete and not stream.cost_reported and stream.reading() is None
    stream.feed(result(cost=0.0125))
    assert stream.complete and stream.cost_reported
    assert stream.usage == Usage(0.0125, 300, 40, 900, 7)  # the CLI's own totals win


def test_a_message_without_an_id_is_counted_on_its_own():
    stream = ClaudeStream()
    for _ in range(2):
        event = assistant(text("x"), tokens_in=5, tokens_out=1)
        del event["message"]["id"]
        stream.feed(event)
    assert stream.usage.tokens == 12


@pytest.mark.parametrize("event, reading", [
    (result(), Reading("All done", Usage(0.25, 300, 40, 900, 7), SESSION, False, 3, "success")),
    (result("error_max_budget_usd", result=None, errors=["budget", "spent"]),
     Reading("budget; spent", Usage(0.25, 300, 40, 900, 7), SESSION, True, 3,
             "error_max_budget_usd")),
    ({**result("error_max_budget_usd"), "is_error": False, "result": ""},  # is_error false,
     Reading("", Usage(0.25, 300, 40, 900, 7), SESSION, True, 3, "error_max_budget_usd")),
    ({**result("error_during_execution"), "result": None},
     Reading("error_during_execution", Usage(0.25, 300, 40, 900, 7), SESSION, True, 3,
             "error_during_execution")),
    ({**result(), "session_id": "--evil", "num_turns": True, "total_cost_usd": "x"},
     Reading("All done", Usage(0.0, 300, 40, 900, 7), None, False, None, "success")),
])
def test_the_result_event_is_the_runs_answer(event, reading):
    stream = ClaudeStream()
    stream.feed(event)
    assert stream.reading() == reading


def test_the_claude_preset_reads_a_whole_stream_and_the_json_format_alike():
    lines = [init(), assistant(tool("Bash", command="ls")), tool_result(), result()]
    stream_out = "\n".join(json.dumps(e) for e in lines) + "\n"
    json_out = json.dumps(result())
    read = presets.PRESETS["claude"].read
    assert read(stream_out, {}) == read(json_out, {}) == Reading(
        "All done", Usage(0.25, 300, 40, 900, 7), SESSION, False, 3, "success")


# --- codex --------------------------------------------------------------------------------------

# docs/exec.md's sample output, verbatim
CODEX_SAMPLE = """\
{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Searching for README files**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"","status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"2025-09-11\\nAGENTS.md\\nCHANGELOG.md\\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"reasoning","text":"**Checking repository root for README**"}}
{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Yep — there’s a `README.md` in the repository root."}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}
"""


def test_the_documented_codex_sample_shows_each_step_and_reads_the_answer():
    stream = CodexStream()
    steps = [s for line in CODEX_SAMPLE.splitlines() for s in stream.feed(json.loads(line))]
    assert steps == [
        Step("thread 0199a213-81c0-7800-8aa1-bbab2a035a53 started", "starting"),
        Step("turn started"),
        Step("thinking: **Searching for README files**", "**Searching for README files**"),
        Step("Run: bash -lc ls", "Run: bash -lc ls"),
        Step("  -> exit 0"),
        Step("thinking: **Checking repository root for README**",
             "**Checking repository root for README**"),
        Step("says: Yep — there’s a `README.md` in the repository root.",
             "Yep — there’s a `README.md` in the repository root."),
        Step("turn done: 24,763 tokens in, 122 out"),
    ]
    assert stream.complete and not stream.cost_reported
    assert stream.reading() == Reading("Yep — there’s a `README.md` in the repository root.",
                                       Usage(0.0, 24763, 122, 24448, 0),
                                       "0199a213-81c0-7800-8aa1-bbab2a035a53")


def item(kind, **fields):
    return {"type": kind, "item": {"id": "item_9", **fields}}


@pytest.mark.parametrize("event, steps", [
    (item("item.completed", type="file_change", status="completed", changes=[
        {"path": "src/cli.py", "kind": "update"}, {"path": "docs/new.md", "kind": "add"},
        {"path": "old.txt", "kind": "delete"}]),
     [Step("Edit src/cli.py, Add docs/new.md, Delete old.txt",
           "Edit src/cli.py, Add docs/new.md, Delete old.txt")]),
    (item("item.completed", type="file_change", status="failed",
          changes=[{"path": "a", "kind": "update"}]), [Step("Edit a (failed)", "Edit a")]),
    (item("item.completed", type="command_execution", command="false", exit_code=1,
          status="failed"), [Step("  -> exit 1")]),
    (item("item.completed", type="command_execution", command="x", exit_code=None,
          status="declined"), [Step("  -> declined")]),
    (item("item.started", type="mcp_tool_call", server="github", tool="search", arguments={},
          status="in_progress"), [Step("MCP github.search", "MCP github.search")]),
    (item("item.completed", type="mcp_tool_call", server="github", tool="search",
          error={"message": "denied"}, status="failed"), [Step("  -> error: denied")]),
    (item("item.completed", type="mcp_tool_call", server="s", tool="t", result={"content": []},
          error=None, status="completed"), [Step("  -> ok")]),
    (item("item.started", type="web_search", query="codex exec"),
     [Step("WebSearch: codex exec", "WebSearch: codex exec")]),
    (item("item.updated", type="todo_list", items=[{"text": "a", "completed": True},
                                                  {"text": "b", "completed": False}]),
     [Step("todo: 1/2 done")]),
    (item("item.updated", type="command_execution", command="x", status="in_progress"), []),
    (item("item.completed", type="error", message="sandbox denied"),
     [Step("error: sandbox denied")]),
    (item("item.started", type="plan", text="1. a"), [Step("plan", "plan")]),
    (item("item.started", type="agent_message", text=""), []),
    ({"type": "turn.failed", "error": {"message": "usage limit reached"}},
     [Step("turn failed: usage limit reached")]),
    ({"type": "error", "message": "stream disconnected"}, [Step("error: stream disconnected")]),
    ({"type": "item.completed", "item": "not a mapping"}, []), ({"type": "mystery"}, []),
])
def test_each_codex_event_shows_a_log_line_and_the_current_step(event, steps):
    assert codex_steps(event) == steps


def test_codex_adds_up_turns_and_is_incomplete_inside_a_turn():
    stream = CodexStream()
    stream.feed({"type": "turn.started"})
    assert not stream.complete and stream.reading() is None
    stream.feed({"type": "turn.completed", "usage": {"input_tokens": 100,
                                                      "cached_input_tokens": 80,
                                                      "output_tokens": 7}})
    stream.feed({"type": "turn.started"})
    assert not stream.complete and stream.usage == Usage(0.0, 100, 7, 80, 0)
    stream.feed({"type": "turn.failed", "error": {"message": "usage limit"}})
    assert stream.complete
    assert stream.reading() == Reading("usage limit", Usage(0.0, 100, 7, 80, 0), None, True)
