"""A command's output: tagged into the log line by line, the result contract, bounded memory.
Real subprocesses (no sleeping): the runner is what the agent uses."""
from __future__ import annotations

import sys

import pytest

from coffee_team.errors import HandlerError
from coffee_team.handlers import CommandRunner, HandlerContext
from coffee_team.output import MAX_LINE, TAIL_BYTES, ResultScan, TaggedLines

pytestmark = pytest.mark.slow  # the tests here start processes


class Sink:
    def __init__(self):
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    @property
    def text(self) -> str:
        return b"".join(self.writes).decode()


def run(script: str, task_id=42, sink=None):
    sink = sink or Sink()
    progress = []
    ctx = HandlerContext(agent="a", options={}, on_progress=progress.append)
    runner = CommandRunner((sys.executable, "-c", script), sink=sink)
    return runner({"id": task_id, "type": "t", "content": None}, ctx), sink, progress


PRINT = "import json, sys; print('working'); print(json.dumps({'n': 1})); print('done')"


def test_output_lines_are_tagged_and_the_last_json_line_is_the_result():
    result, sink, progress = run(PRINT + "; print('oops', file=sys.stderr)")
    assert result == {"n": 1}
    assert sorted(sink.text.splitlines()) == ['[#42] done', '[#42] oops', '[#42] working',
                                              '[#42] {"n": 1}']
    assert progress and all(p is None for p in progress)  # output counts as progress


@pytest.mark.parametrize("lines, shown", [
    (b"", ""), (b"\n", ""), (b"a\n", "a"), (b"a\nb\n", "b"), (b"a\nb", "b"),
    (b"a\n  \n\t\n", "a"), (b"\n\nq\r\n", "q"), (b"x" * 10**6 + b"\n", "x" * 159 + "…"),
    (b"ok\n\xff\xfe bad bytes\n", "\ufffd\ufffd bad bytes"), (b"a\n\x1b[2K\n", "[2K"),
])
def test_last_line_is_the_last_non_blank_line_shown_as_one_line(lines, shown):
    from coffee_team.output import last_line
    assert last_line(lines) == shown


def test_the_last_line_a_command_printed_is_its_current_step_and_is_not_logged_twice():
    sink, steps = Sink(), []
    ctx = HandlerContext(agent="a", options={}, on_progress=lambda m: steps.append(("touch", m)),
                         on_step=lambda m: steps.append(("step", m)))
    script = ("import sys, time\n"
              "print('compiling\\x1b[1m  src/a.c', flush=True); time.sleep(0.2)\n"
              "print('  ', flush=True); time.sleep(0.2)\n"
              "print('linking ' + 'x' * 300, file=sys.stderr, flush=True)\n"
              "time.sleep(0.2); print('null')\n")
    CommandRunner((sys.executable, "-c", script), sink=sink)({"id": 3, "type": "t"}, ctx)
    shown = [m for kind, m in steps if kind == "step"]
    assert shown[0] == "compiling [1m  src/a.c"  # one line, no control characters
    assert shown[-2].startswith("linking xxx") and len(shown[-2]) == 160
    assert shown[-1] == "null"
    assert ("touch", None) in steps  # a blank line is output all the same: not a stall
    assert sink.text.count("compiling") == 1 and "progress" not in sink.text


@pytest.mark.parametrize("script, result", [
    ("print('[1, 2]'); print('{\"a\": 1}'); print('not json')", {"a": 1}),
    ("import json; print(json.dumps({'a': [1, 2]}, indent=2))", {"a": [1, 2]}),  # pretty
    ("import json; print(json.dumps([1, 2], indent=2))", [1, 2]),  # not its last line, 2
    ("print('log'); print('7')", 7), ("print('x'); print('null')", None),
    ("print('true  ')", True), ("pass", None), ("print('   ')", None),
    ("import sys; sys.stdout.write('{\"no\": \"newline\"}')", {"no": "newline"}),
    ("print('2024-01-01 12:00 started'); print('-')", "no JSON"),
    ("print('[#7] nope'); print('{broken')", "no JSON"),
    ("print('nullx'); print('tru')", "no JSON"),
])
def test_result_contract(script, result):
    if result == "no JSON":
        with pytest.raises(HandlerError, match="printed no JSON result"):
            run(script)
    else:
        assert run(script)[0] == result


def test_result_file_is_preferred_to_stdout():
    script = ("import os; open(os.environ['COFFEE_RESULT_FILE'], 'w').write('{\"f\": 1}'); "
              "print('{\"stdout\": 1}')")
    assert run(script)[0] == {"f": 1}


@pytest.mark.parametrize("content, error", [
    ("'{oops'", "COFFEE_RESULT_FILE holds invalid JSON"),
    ("'[' + '1,' * 600_000 + '1]'", "COFFEE_RESULT_FILE is over"),
])
def test_bad_result_file_is_a_task_error(content, error):
    script = f"import os; open(os.environ['COFFEE_RESULT_FILE'], 'w').write({content})"
    with pytest.raises(HandlerError, match=error):
        run(script)


def test_empty_result_file_means_null_and_it_is_removed_afterwards(tmp_path):
    script = (f"import os; p = os.environ['COFFEE_RESULT_FILE']; open(p, 'w').close(); "
              f"open({str(tmp_path / 'where')!r}, 'w').write(p); print('[1]')")
    assert run(script)[0] is None
    assert not (tmp_path / "where").read_text().startswith(str(tmp_path))
    assert not __import__("os").path.exists((tmp_path / "where").read_text())


def test_failure_names_the_last_stderr_line_even_after_much_output():
    script = ("import sys\nfor i in range(20000): print('x' * 50, file=sys.stderr)\n"
              "print('the real reason', file=sys.stderr); sys.exit(3)")
    with pytest.raises(HandlerError, match="exited with 3: the real reason"):
        run(script)


def test_periodic_runs_are_tagged_as_such():
    _, sink, _ = run(PRINT, task_id=None)
    assert "[periodic] working" in sink.text


def test_task_on_stdin_up_to_the_content_limit_reaches_a_command_that_prints_first():
    """A command that prints a lot before reading stdin must not deadlock with our writes."""
    script = ("import json, sys\nfor i in range(5000): print('y' * 100)\n"
              "t = json.load(sys.stdin); print(json.dumps(len(t['content'])))")
    sink, ctx = Sink(), HandlerContext(agent="a", options={})
    runner = CommandRunner((sys.executable, "-c", script), sink=sink)
    assert runner({"id": 1, "type": "t", "content": "z" * 1_000_000}, ctx) == 1_000_000


# --- TaggedLines / ResultScan in bounded memory ------------------------------------------------

def test_tagged_lines_split_across_chunks_and_keep_a_bounded_tail():
    sink = Sink()
    lines = TaggedLines(b"[#1] ", sink)
    assert lines.feed(b"ab") == b""
    assert lines.feed(b"c\nde\nf") == b"abc\nde\n"
    assert lines.close() == b"f"
    assert sink.text == "[#1] abc\n[#1] de\n[#1] f\n"
    for _ in range(1000):
        lines.feed(b"z" * 100 + b"\n")
    assert len(lines.tail) == TAIL_BYTES and lines.last_line() == "z" * 100


def test_an_endless_line_is_logged_in_pieces_not_held():
    sink, lines = Sink(), TaggedLines(b"> ", Sink())
    lines.sink = sink
    for _ in range(40):
        lines.feed(b"q" * 65536)  # 2.5 MB without a newline
        assert len(lines.pending) <= MAX_LINE
    assert len(b"".join(sink.writes)) >= 40 * 65536 - MAX_LINE


def test_result_scan_stops_keeping_stdout_once_it_is_too_big():
    scan = ResultScan()
    scan.feed(b'{"early": 1}\n')
    for _ in range(20):
        scan.feed(b"x" * 100_000 + b"\n")
    assert scan.whole is None and scan.result("cmd") == {"early": 1}
