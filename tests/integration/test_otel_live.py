"""Traces from a real team: the demo agents under a real supervisord export OTLP over HTTP to a
receiver in this test (``http.server`` decoding the protobuf with ``opentelemetry.proto``).
A design request sent with ``coffee-team send`` becomes one trace through architect,
code_developer and project_manager, in that order; a kill -9 becomes the watchdog's crash
and restart spans on the killed agent's resource."""
from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest, ExportTraceServiceResponse)

from tests.harness import boot_supervisord, demo_agents, wait_until  # noqa: E402

pytestmark = pytest.mark.slow  # the tests here start processes

CONSUMER = 5  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_CONSUMER
CHAIN = [("architect", "process design_request"), ("code_developer", "process spec_created"),
         ("project_manager", "process needs_verification")]


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace endpoint on 127.0.0.1: every span it was sent, flattened."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[dict] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value
                            for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.spans += [{"service": resource.get("service.name"), "name": s.name,
                                    "kind": s.kind, "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent": s.parent_span_id.hex(),
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "events": [e.name for e in s.events]}
                                   for s in scope.spans]

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        self.server.take(body)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def chain_trace(spans: list[dict]) -> list[dict] | None:
    """The consumer spans of the trace that holds the design request, once all three are in."""
    start = next((s for s in spans if s["name"] == "process design_request"), None)
    if start is None:
        return None
    consumers = sorted((s for s in spans if s["trace_id"] == start["trace_id"]
                        and s["kind"] == CONSUMER), key=lambda s: s["start"])
    return consumers if len(consumers) >= len(CHAIN) else None


def test_a_design_request_is_one_trace_across_three_agents(receiver, project):
    # receiver first: it outlives the team, whose agents export their last spans as they stop
    # (to a closed port they retried until stop_wait_seconds ran out)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    project.write_team(demo_agents(work_seconds=0.05))
    boot_supervisord(project, env=env)
    project.wait_states("RUNNING", timeout=40)

    project.cli("send", "architect", "design_request", "--content", '{"what": "login"}',
                check=True, env=env)
    consumers = wait_until(lambda: chain_trace(receiver.snapshot()), 30, 0.1,
                           "the chain's three consumer spans")
    assert [(s["service"], s["name"]) for s in consumers] == CHAIN
    trace = [s for s in receiver.snapshot() if s["trace_id"] == consumers[0]["trace_id"]]
    by_id = {s["span_id"]: s for s in trace}
    (root,) = [s for s in trace if not s["parent"]]
    assert (root["service"], root["name"]) == ("coffee-team", "send design_request")  # the CLI
    for before, after in zip(consumers, consumers[1:]):
        sent_by = by_id[after["parent"]]  # the follow-up's producer span, inside `before`
        assert sent_by["parent"] == before["span_id"]
        assert before["start"] <= sent_by["start"] <= sent_by["end"] <= before["end"]
        assert before["end"] - before["start"] >= 0.05e9  # the handler's time is inside

    victim = project.infos()["code_searcher"]["pid"]
    os.kill(victim, signal.SIGKILL)
    decisions = wait_until(lambda: {s["name"] for s in receiver.snapshot()
                                    if s["service"] == "code_searcher"
                                    and s["name"].startswith("watchdog ")} >=
                           {"watchdog crash", "watchdog restart_scheduled", "watchdog restarted"}
                           and receiver.snapshot(), 30, 0.1, "the watchdog's restart spans")
    crash = next(s for s in decisions if s["name"] == "watchdog crash")
    assert crash["events"] == ["crash"]
