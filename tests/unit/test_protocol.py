"""ListenerProtocol against supervisord's real wire format, over StringIO and real pipes."""
from __future__ import annotations

import io
import os
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from supervisor import events
from supervisor.process import EventListenerPool
from supervisor.states import ProcessStates

from coffee_team.watchdog.protocol import MAX_HEADER_LINE, Event, ListenerProtocol, MalformedEvent

QUICK = 1.0  # generous upper bound for "returned promptly" on a loaded CI machine


def envelope(event_type, payload, serial=1, pool_serial=1):
    """Frame ``payload`` exactly as supervisord does, using its own envelope code."""
    pool = SimpleNamespace(config=SimpleNamespace(name="watchdog", options=SimpleNamespace(identifier="supervisor")))
    return EventListenerPool._eventEnvelope(pool, event_type, serial, pool_serial, payload)


def exited_event(name="barista", expected=False, pid=4242, serial=1):
    process = SimpleNamespace(
        config=SimpleNamespace(name=name), group=SimpleNamespace(config=SimpleNamespace(name=name)), pid=pid
    )
    event = events.ProcessStateExitedEvent(process, ProcessStates.RUNNING, expected=expected)
    return envelope(events.EventTypes.PROCESS_STATE_EXITED, event.payload(), serial=serial)


def tick_event(when=1700000005, serial=2):
    return envelope(events.EventTypes.TICK_5, events.Tick5Event(when, None).payload(), serial=serial)


def string_protocol(stdin_text):
    stdout, stderr = io.StringIO(), io.StringIO()
    return ListenerProtocol(io.StringIO(stdin_text), stdout, stderr, clock=lambda: 1700000000.25), stdout, stderr


class Pipe:
    """A real pipe standing in for supervisord -> listener stdin."""

    def __init__(self):
        read_fd, self.write_fd = os.pipe()
        self.reader = open(read_fd, "r", encoding="utf-8")

    def write(self, text):
        os.write(self.write_fd, text.encode("utf-8"))

    def close_writer(self):
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def close(self):
        self.close_writer()
        self.reader.close()


@pytest.fixture
def pipe():
    p = Pipe()
    yield p
    p.close()


def pipe_protocol(pipe, **options):
    stdout, stderr = io.StringIO(), io.StringIO()
    return ListenerProtocol(pipe.reader, stdout, stderr, **options), stdout, stderr


# --- the happy path ------------------------------------------------------------------------

def test_exited_event_round_trip():
    protocol, stdout, _ = string_protocol(exited_event())
    protocol.ready()
    event = protocol.read_event(timeout=1)
    protocol.ok()

    assert event.eventname == "PROCESS_STATE_EXITED"
    assert event.headers == {
        "ver": "3.0",
        "server": "supervisor",
        "serial": "1",
        "pool": "watchdog",
        "poolserial": "1",
        "eventname": "PROCESS_STATE_EXITED",
        "len": event.headers["len"],
    }
    assert event.payload_headers == {
        "processname": "barista",
        "groupname": "barista",
        "from_state": "RUNNING",
        "expected": "0",
        "pid": "4242",
    }
    assert event.data == ""
    assert stdout.getvalue() == "READY\nRESULT 2\nOK"


def test_tick_5():
    protocol, _, _ = string_protocol(tick_event())
    event = protocol.read_event()
    assert event == Event(headers=event.headers, payload_headers={"when": "1700000005"}, data="", eventname="TICK_5")


def test_fail_result_token():
    protocol, stdout, _ = string_protocol("")
    protocol.fail()
    assert stdout.getvalue() == "RESULT 4\nFAIL"


def test_event_data_after_the_payload_header_line_is_kept_verbatim():
    text = "line one\nline two: with colon\n  ünïcode ☕\n"
    payload = f"processname:barista groupname:barista pid:7 channel:stdout\n{text}"
    protocol, _, _ = string_protocol(envelope(events.EventTypes.PROCESS_LOG_STDOUT, payload))
    event = protocol.read_event()
    assert event.eventname == "PROCESS_LOG_STDOUT"
    assert event.payload_headers["channel"] == "stdout"
    assert event.data == text


def test_empty_payload():
    protocol, _, _ = string_protocol(envelope(events.EventTypes.SUPERVISOR_STATE_CHANGE_RUNNING, ""))
    event = protocol.read_event()
    assert (event.eventname, event.payload_headers, event.data) == ("SUPERVISOR_STATE_CHANGE_RUNNING", {}, "")


def test_multiple_events_back_to_back_then_eof():
    stream = exited_event(serial=1) + tick_event(serial=2) + exited_event("roaster", expected=True, serial=3)
    protocol, _, _ = string_protocol(stream)
    names = [protocol.read_event().eventname for _ in range(3)]
    assert names == ["PROCESS_STATE_EXITED", "TICK_5", "PROCESS_STATE_EXITED"]
    with pytest.raises(EOFError):
        protocol.read_event()


def test_multiple_events_in_one_pipe_write(pipe):
    protocol, _, _ = pipe_protocol(pipe)
    pipe.write(exited_event(serial=1) + tick_event(serial=2))
    first, second = protocol.read_event(timeout=QUICK), protocol.read_event(timeout=QUICK)
    assert (first.payload_headers["processname"], second.eventname) == ("barista", "TICK_5")
    assert protocol.read_event(timeout=0) is None


def test_event_split_across_writes_and_a_timeout(pipe):
    protocol, _, _ = pipe_protocol(pipe)
    whole = exited_event()
    pipe.write(whole[:20])
    assert protocol.read_event(timeout=0.01) is None  # the partial header stays buffered
    pipe.write(whole[20:])
    assert protocol.read_event(timeout=QUICK).payload_headers["processname"] == "barista"


def test_len_counts_characters_even_when_a_write_splits_a_utf8_character(pipe):
    # supervisord computes len on the str payload, then sends it UTF-8 encoded.
    payload = "processname:barista groupname:barista pid:7 channel:stdout\ncafé ☕"
    raw = envelope(events.EventTypes.PROCESS_LOG_STDOUT, payload).encode("utf-8")
    split = raw.index("☕".encode()) + 1
    protocol, _, _ = pipe_protocol(pipe)
    os.write(pipe.write_fd, raw[:split])
    rest_arrives_later = threading.Timer(0.05, os.write, args=(pipe.write_fd, raw[split:] + tick_event().encode()))
    rest_arrives_later.start()
    try:
        assert protocol.read_event(timeout=QUICK).data == "café ☕"
    finally:
        rest_arrives_later.join(timeout=5)
    assert protocol.read_event(timeout=QUICK).eventname == "TICK_5"


# --- timeouts and EOF ----------------------------------------------------------------------

def test_timeout_on_empty_pipe_returns_none_quickly(pipe):
    protocol, stdout, _ = pipe_protocol(pipe)
    started = time.monotonic()
    assert protocol.read_event(timeout=0.05) is None
    assert time.monotonic() - started < QUICK
    assert protocol.read_event(timeout=0) is None
    assert stdout.getvalue() == ""


def test_eof_on_stringio_raises_eoferror():
    protocol, _, _ = string_protocol("")
    with pytest.raises(EOFError):
        protocol.read_event(timeout=0)


def test_eof_on_pipe_raises_eoferror_even_without_timeout(pipe):
    protocol, _, _ = pipe_protocol(pipe)
    pipe.write(tick_event())
    pipe.close_writer()
    assert protocol.read_event().eventname == "TICK_5"
    with pytest.raises(EOFError):
        protocol.read_event()
    with pytest.raises(EOFError):
        protocol.read_event(timeout=0)


# --- malformed input -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "header",
    [
        "this is not a header\n",
        "ver:3.0 eventname:TICK_5\n",  # no len
        "ver:3.0 len:5\n",  # no eventname
        "ver:3.0 eventname:TICK_5 len:five\n",
        "ver:3.0 eventname:TICK_5 len:-1\n",
        "ver:3.0 eventname:TICK_5 len:99999999999\n",  # would wait for 100 GB
        ":nokey eventname:TICK_5 len:0\n",
        "\n",
    ],
)
def test_malformed_header_raises_and_the_next_event_still_parses(header):
    protocol, _, _ = string_protocol(header + tick_event())
    with pytest.raises(MalformedEvent):
        protocol.read_event()
    assert protocol.read_event().eventname == "TICK_5"


def test_malformed_payload_header():
    protocol, _, _ = string_protocol(envelope(events.EventTypes.TICK_5, "garbage without colons"))
    with pytest.raises(MalformedEvent):
        protocol.read_event()


def test_truncated_payload_on_stringio():
    protocol, _, _ = string_protocol(tick_event()[:-3])
    with pytest.raises(MalformedEvent, match="truncated payload"):
        protocol.read_event()
    with pytest.raises(EOFError):
        protocol.read_event()


def test_truncated_header_line_at_eof():
    protocol, _, _ = string_protocol("ver:3.0 eventname:TICK_5 le")
    with pytest.raises(MalformedEvent, match="truncated header"):
        protocol.read_event()
    with pytest.raises(EOFError):
        protocol.read_event()


def test_truncated_payload_on_closed_pipe(pipe):
    protocol, _, _ = pipe_protocol(pipe)
    pipe.write("ver:3.0 eventname:TICK_5 len:100\nwhen:1")
    pipe.close_writer()
    with pytest.raises(MalformedEvent, match="end of input"):
        protocol.read_event(timeout=QUICK)
    with pytest.raises(EOFError):
        protocol.read_event(timeout=QUICK)


def test_overlong_len_on_open_pipe_times_out_instead_of_hanging(pipe):
    protocol, _, _ = pipe_protocol(pipe, payload_timeout=0.05)
    pipe.write("ver:3.0 eventname:TICK_5 len:100\nwhen:1")
    started = time.monotonic()
    with pytest.raises(MalformedEvent, match="timeout"):
        protocol.read_event(timeout=None)  # even "wait forever" bounds the payload read
    assert time.monotonic() - started < QUICK
    pipe.write(tick_event())
    assert protocol.read_event(timeout=QUICK).eventname == "TICK_5"


def test_endless_header_line_on_pipe_is_rejected(pipe):
    protocol, _, _ = pipe_protocol(pipe)
    writer = threading.Thread(target=pipe.write, args=("x" * (MAX_HEADER_LINE + 10) + "\n" + tick_event(),))
    writer.start()
    try:
        with pytest.raises(MalformedEvent, match="longer than"):
            protocol.read_event(timeout=QUICK)
    finally:
        writer.join(timeout=5)
    assert protocol.read_event(timeout=QUICK).eventname == "TICK_5"


def test_endless_header_line_on_stringio_is_skipped_whole():
    protocol, _, _ = string_protocol("y" * (MAX_HEADER_LINE * 2) + "\n" + tick_event())
    with pytest.raises(MalformedEvent, match="longer than"):
        protocol.read_event()
    assert protocol.read_event().eventname == "TICK_5"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_garbage_never_crashes_or_loops(garbage):
    protocol, stdout, _ = string_protocol(garbage + tick_event())
    for _ in range(len(garbage) + 5):
        try:
            protocol.read_event()
        except MalformedEvent:
            continue
        except EOFError:
            break
    else:
        pytest.fail("read_event never reached EOF")
    assert stdout.getvalue() == ""


# --- stdout hygiene and logging ------------------------------------------------------------

def test_stdout_carries_only_protocol_tokens():
    protocol, stdout, stderr = string_protocol("not an event\n" + exited_event() + tick_event())
    results = []
    protocol.ready()
    while True:
        try:
            event = protocol.read_event()
        except MalformedEvent as error:
            protocol.log(f"bad event: {error}")
            protocol.fail()
            results.append("RESULT 4\nFAIL")
        except EOFError:
            break
        else:
            protocol.log(f"got {event.eventname}")
            protocol.ok()
            results.append("RESULT 2\nOK")
        protocol.ready()
    assert results == ["RESULT 4\nFAIL", "RESULT 2\nOK", "RESULT 2\nOK"]
    assert stdout.getvalue() == "READY\n" + "".join(result + "READY\n" for result in results)
    assert "got PROCESS_STATE_EXITED" in stderr.getvalue()


def test_log_writes_timestamped_lines_to_stderr():
    protocol, stdout, stderr = string_protocol("")
    protocol.log("restarting barista\nbecause it crashed\n")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("2023-11-14 ") and ",250 " in line for line in lines)
    assert lines[0].endswith(" restarting barista") and lines[1].endswith(" because it crashed")
    assert stdout.getvalue() == ""


def test_for_supervisor_moves_stray_prints_to_stderr(monkeypatch):
    stdin, stdout, stderr = io.StringIO(""), io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    protocol = ListenerProtocol.for_supervisor()
    print("debug noise")
    protocol.ready()
    assert stdout.getvalue() == "READY\n"
    assert stderr.getvalue() == "debug noise\n"
