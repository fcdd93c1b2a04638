"""The pure parts of keeping an llm agent's answer whole (issue 26, item 6): the whole answer
parsed and only what is stored cut, a long event line joined again, the undelivered follow-ups
of a large answer recorded and said in bounded size, the choice of what a command left
running to kill and reap. tests/integration/test_llm_answers.py runs them for real."""
from __future__ import annotations

import json

from coffee_team.agent import followups
from coffee_team.llm import presets
from coffee_team.llm.live import EventScan, StdoutTail
from coffee_team.llm.reading import Reading
from coffee_team.llm.stream import ClaudeStream
from coffee_team.parentwatch import Seen, leftovers


# --- what is parsed, what is stored -------------------------------------------------------------

def many(count: int) -> list[dict]:
    return [{"recipient": None, "type": "job", "content": {"n": n}} for n in range(count)]


def test_a_send_list_past_the_stored_size_is_handed_on_whole():
    answer = "Done.\n\n```json\n" + json.dumps({"send": many(10_000), "spec": "S-1"}) + "\n```"
    assert len(answer) > 500_000  # five times what is stored of an answer
    result = presets.result_of(Reading(text=answer))
    assert result["send"] == many(10_000)
    assert result["data"] == {"spec": "S-1"}  # small without its send list: kept
    assert result["text"].endswith("more characters cut]")
    assert len(json.dumps({k: v for k, v in result.items() if k != "send"})) < 250_000


def test_data_too_large_to_store_is_left_out_and_its_send_list_still_goes():
    answer = json.dumps({"blob": "x" * 200_000, "send": many(2)})
    result = presets.result_of(Reading(text=answer))
    assert "data" not in result and result["send"] == many(2)


# --- a long event line ----------------------------------------------------------------------

class Sink:
    def __init__(self):
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class Ctx:
    def step(self, message: str) -> None:
        pass


def scan(limit: int = 1 << 20) -> EventScan:
    made = EventScan(ClaudeStream(), "[#1] ", Sink(), Ctx(), lambda: None)
    made.limit = limit
    return made


def result_line(text: str) -> bytes:
    return json.dumps({"type": "result", "subtype": "success", "result": text,
                       "total_cost_usd": 0.5, "usage": {}}).encode() + b"\n"


def test_an_event_line_handed_on_in_pieces_is_read_whole():
    line = result_line("y" * 5000)
    events = scan()
    events.feed(b'{"type": "system", "subtype": "init", "session_id": "s"}\n')
    for start in range(0, len(line) - 100, 1000):  # the pump's pieces: no newline in them
        events.feed(line[start:start + 1000])
    events.feed(line[len(line) - len(line) % 1000:] + b'{"type": "user"}\n')
    assert events.stream.reading().text == "y" * 5000
    assert events.not_read() == ""


def test_the_last_line_without_a_newline_is_read_when_stdout_ends():
    events = scan()
    events.feed(result_line("done")[:-1])
    assert events.stream.reading() is None
    events.end()
    assert events.stream.reading().text == "done"


def test_a_line_over_the_limit_is_not_read_and_says_so():
    events = scan(limit=2000)
    line = result_line("z" * 5000)
    for start in range(0, len(line) - 1, 1500):
        events.feed(line[start:min(start + 1500, len(line) - 1)])
    events.feed(b"\n" + result_line("after"))
    assert events.stream.reading().text == "after"  # the lines after it are read
    assert "a line of its output was over 2000 bytes" in events.not_read()


def test_stdout_longer_than_what_is_kept_says_so():
    tail = StdoutTail(limit=100)
    tail.feed(b"x" * 150 + b"\n")
    assert tail.not_read() == "; its output was 151 bytes, only the last 100 were read"
    assert StdoutTail(limit=100).not_read() == ""


# --- undelivered follow-ups, however many ------------------------------------------------------

def test_ten_thousand_undelivered_follow_ups_are_stored_and_said_in_bounded_size():
    undelivered = followups.unsent(many(10_000), "worker has 1000 pending tasks")
    stored = followups.recorded({"text": "ok"}, undelivered)
    assert len(stored["undelivered"]) == followups.KEPT
    assert stored["undelivered_count"] == 10_000 and stored["text"] == "ok"
    assert len(json.dumps(stored)) < 64 * 1024
    title, message = followups.notice("architect", 7, undelivered, sent=0)
    assert title == "architect: 10000 follow-ups of task #7 not sent"
    assert "(none was sent)" in message and "and 9990 more" in message
    assert len(message) < 2000


def test_a_few_undelivered_are_kept_as_they_are_and_the_others_said_sent():
    undelivered = followups.unsent(many(2), "unknown recipient 'ghost'")
    assert "undelivered_count" not in followups.recorded(None, undelivered)
    _, message = followups.notice("architect", 7, undelivered, sent=3)
    assert "(the others were sent)" in message


# --- what a command left running ---------------------------------------------------------------

ME, CLI = 100, 200


def test_with_the_subreaper_our_new_children_are_killed_and_our_zombies_reaped():
    procs = {ME: Seen(1, False, False), CLI: Seen(ME, True, False),   # the command: its Popen's
             300: Seen(ME, False, False),   # left its session, adopted: killed
             301: Seen(ME, True, False),    # an adopted one that died: reaped
             302: Seen(ME, False, False),   # a child we had before the run: left alone
             303: Seen(300, False, False),  # its child: found once 300 is gone
             400: Seen(1, False, False)}    # not ours
    assert leftovers(procs, ME, CLI, before={302}, adopting=True) == ([300], [301])


def test_without_the_subreaper_the_marked_processes_are_killed_and_none_reaped():
    procs = {300: Seen(1, False, True), 301: Seen(1, True, True), 302: Seen(ME, False, False),
             303: Seen(55, False, True), ME: Seen(1, False, True), CLI: Seen(ME, False, True)}
    assert leftovers(procs, ME, CLI, before=set(), adopting=False) == ([300, 303], [])
