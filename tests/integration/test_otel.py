"""OpenTelemetry traces in-process (coffee_team/otel.py): the SDK's in-memory exporter sees the
demo chain architect → code_developer → project_manager run by real Agents on a real queue as
one trace; off by default, an agent never imports opentelemetry."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from coffee_team import otel  # noqa: E402
from coffee_team.agent.runtime import Agent  # noqa: E402
from coffee_team.queue import MessageQueue  # noqa: E402
from tests.fast_team import temp_root, write_team  # noqa: E402

CHAIN = ("architect", "code_developer", "project_manager")
WORK = 0.05  # seconds of each demo handler: the consumer span must hold it


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    otel.install(exporter, batch=False, service="test")
    try:
        yield exporter
    finally:
        otel.uninstall()


@pytest.fixture
def chain_team():
    with temp_root() as root:
        agents = {name: {"priority": i + 1, "handler": "coffee_team.agent.demo:handle",
                         "options": {"work_seconds": WORK}} for i, name in enumerate(CHAIN)}
        yield write_team(root, agents)


def run_chain(team) -> None:
    """The user asks the architect for a design; each agent of the chain claims and handles
    what the previous one sent, as its runtime would."""
    with MessageQueue.from_team(team) as queue:
        queue.send("cli", "architect", "design_request", {"what": "login page"})
        for name in CHAIN:
            agent = Agent(team, name, queue=queue)
            (task,) = queue.claim(name)
            agent.process(task)
        assert [t["status"] for t in queue.list_tasks()] == ["completed"] * 3


def test_the_demo_chain_is_one_trace_with_the_agents_in_order(spans, chain_team):
    run_chain(chain_team)
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    consumers = sorted((s for s in finished if s.kind is SpanKind.CONSUMER),
                       key=lambda s: s.start_time)
    assert [(s.attributes["messaging.destination.name"], s.name) for s in consumers] == [
        ("architect", "process design_request"), ("code_developer", "process spec_created"),
        ("project_manager", "process needs_verification")]
    by_id = {s.context.span_id: s for s in finished}
    for consumer in consumers:  # each handled task hangs under the span that sent it
        producer = by_id[consumer.parent.span_id]
        assert producer.kind is SpanKind.PRODUCER
        assert consumer.end_time - consumer.start_time >= WORK * 1e9  # the handler is inside
    # the follow-ups were sent from inside the previous agent's handling
    assert by_id[consumers[1].parent.span_id].parent.span_id == consumers[0].context.span_id
    assert by_id[consumers[2].parent.span_id].parent.span_id == consumers[1].context.span_id


def test_a_claimed_task_carries_its_senders_context(spans, chain_team):
    with MessageQueue.from_team(chain_team) as queue:
        queue.send_many([{"sender": "cli", "recipient": "architect", "type": "a"},
                         {"sender": "cli", "recipient": "code_developer", "type": "b"}])
        (first,), (second,) = queue.claim("architect"), queue.claim("code_developer")
    (producer,) = spans.get_finished_spans()
    version, trace_id, span_id, flags = first.traceparent.split("-")
    assert (int(trace_id, 16), int(span_id, 16)) == (producer.context.trace_id,
                                                     producer.context.span_id)
    assert second.traceparent == first.traceparent  # one batch, one sending span


def test_a_stored_tracestate_reaches_the_consumer(spans, chain_team):
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    outer = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1),
                        trace_state=TraceState([("vendor", "v1")]))
    with MessageQueue.from_team(chain_team) as queue:
        with trace.use_span(NonRecordingSpan(outer)):
            queue.send("cli", "code_developer", "spec_created", {"spec_id": "S"})
        (task,) = queue.claim("code_developer")
        assert task.traceparent.endswith("\nvendor=v1")
        Agent(chain_team, "code_developer", queue=queue).process(task)
    consumer = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    assert consumer.context.trace_id == 0x1234
    assert consumer.context.trace_state.get("vendor") == "v1"


def test_a_send_from_a_running_task_in_another_process_continues_its_trace(spans, chain_team):
    """The MCP server sends on a running task's behalf: the task's context, handed over as
    text (otel.current_context, in its --mcp-config), is the send's parent, and the new task
    names the task that sent it."""
    with MessageQueue.from_team(chain_team) as queue:
        queue.send("cli", "architect", "design_request", {})
        (task,) = queue.claim("architect")
        with otel.handling("architect", task):
            handed_over = otel.current_context()
        sent = queue.send("architect", "code_developer", "spec_created", {},
                          sent_from=task.id, trace_parent=handed_over)
        (child,) = queue.claim("code_developer")
    assert child.id == sent
    consumer = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    producer = next(s for s in spans.get_finished_spans() if s.name == "send spec_created")
    assert producer.context.trace_id == consumer.context.trace_id
    assert producer.parent.span_id == consumer.context.span_id
    assert child.traceparent.split("-")[2] == format(producer.context.span_id, "016x")
    assert otel.current_context() is None  # outside any span: nothing to hand over


def test_watchdog_decisions_are_spans_on_the_agents_resource(spans):
    otel.lifecycle("code_developer", "given_up", {"reason": "3 crashes", "at": None})
    otel.lifecycle("code_developer", "running", {"pid": 1})  # not a decision: no span
    otel.lifecycle(None, "given_up", {})                     # no agent: no span
    (span,) = spans.get_finished_spans()
    assert span.resource.attributes["service.name"] == "code_developer"
    assert span.resource.attributes["service.namespace"] == "coffee-team"
    (event,) = span.events
    assert (event.name, event.attributes["coffee.reason"]) == ("given_up", "3 crashes")


def test_tracing_is_on_only_when_the_otel_variables_ask():
    assert not otel.wanted({})
    assert otel.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert otel.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert otel.wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not otel.wanted({"OTEL_TRACES_EXPORTER": "none",
                            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not otel.wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})


AGENT_WITHOUT_OTEL = textwrap.dedent("""
    import sys
    from coffee_team.agent.runtime import Agent
    from coffee_team.queue import MessageQueue
    from tests.fast_team import temp_root, write_team
    with temp_root() as root:
        team = write_team(root, {"architect": {"handler": "coffee_team.agent.demo:handle",
                                               "options": {"work_seconds": 0}},
                                 "code_developer": {"handler": "coffee_team.agent.demo:handle"}})
        with MessageQueue.from_team(team) as queue:
            queue.send("cli", "architect", "design_request")
            (task,) = queue.claim("architect")
            Agent(team, "architect", queue=queue).process(task)
            assert queue.claim("code_developer")[0].traceparent is None
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    print(loaded or "none")
""")


@pytest.mark.slow  # starts a process
def test_off_by_default_an_agent_imports_no_opentelemetry():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", AGENT_WITHOUT_OTEL], capture_output=True,
                         text=True, env=environ, timeout=60, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "none", out.stdout + out.stderr
