"""OpenTelemetry traces across agents (the optional extra ``otel``).

A task carries the W3C trace context of the code that sent it (``tasks.traceparent``):
``MessageQueue.send``/``send_many`` open a PRODUCER span and store its context with the rows,
the agent runtime's handling of a claimed task is a CONSUMER span, child of that stored
context, with the handler's time inside it, and the follow-ups sent when the task completes
are sent from inside that span, so architect → code_developer → project_manager is one trace.
The watchdog's restart decisions and health warnings are short spans on the agent's own
resource (``service.name`` = the agent), with the decision as a span event.

Off unless the standard variables ask for traces: ``OTEL_TRACES_EXPORTER`` (``otlp`` or
``console``; ``none`` turns it off) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` wins. Every other
``OTEL_*`` setting (headers, timeouts, batch delay, resource attributes, service name) is the
SDK's own. Off, nothing of opentelemetry is imported and each hook is one flag check.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Mapping, Optional

from . import events as kinds

NAMESPACE = "coffee-team"
SYSTEM = "coffee-team"
_W3C_FIELDS = ("traceparent", "tracestate")
# The watchdog's decisions and findings that become spans on the agent's resource.
LIFECYCLE_KINDS = kinds.INSTANTS | {kinds.START_FAILED}
OFF = contextlib.nullcontext()  # what every hook returns while tracing is off


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask this process for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class _Tracing:
    """The tracer of this process and, for the watchdog, one per agent it reports on; every
    provider feeds the same span processor (one export thread however many agents)."""

    def __init__(self, processor: Any, service: Optional[str], owns_global: bool):
        self.processor = processor
        self.providers: dict[str, Any] = {}
        self.lock = threading.Lock()
        provider = self._provider(service, shutdown_on_exit=owns_global)
        if owns_global:  # so spans of a handler's own instrumentation nest in ours
            from opentelemetry import trace
            trace.set_tracer_provider(provider)
        self.tracer = provider.get_tracer("coffee_team")

    def _provider(self, service: Optional[str], shutdown_on_exit: bool = False) -> Any:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        attributes = {"service.namespace": NAMESPACE}
        if service:
            attributes["service.name"] = service
        provider = TracerProvider(resource=Resource.create(attributes),
                                  shutdown_on_exit=shutdown_on_exit)
        provider.add_span_processor(self.processor)
        return provider

    def agent_tracer(self, agent: str) -> Any:
        with self.lock:
            if agent not in self.providers:
                self.providers[agent] = self._provider(agent).get_tracer("coffee_team")
            return self.providers[agent]


def _installed(environ: Mapping[str, str]) -> bool:
    """Whether the SDK is there; if not, one line on stderr and no traces: tracing is an aid,
    never a reason for a program not to run."""
    from coffee_team.extras import installed, missing
    console = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console"
    if console and installed("opentelemetry.sdk"):
        return True  # the console exporter is the SDK's own
    lacking = missing("otel", "tracing (asked for by the OTEL_* variables)")
    if lacking:
        print(f"coffee-team: {lacking}; tracing is off", file=sys.stderr, flush=True)
    return lacking is None


_tracing: Optional[_Tracing] = None
_enabled = wanted(os.environ) and _installed(os.environ)
_setup_lock = threading.Lock()


def enabled() -> bool:
    return _enabled


def install(exporter: Any = None, *, batch: bool = True, service: Optional[str] = None) -> None:
    """Turn tracing on in this process. ``exporter`` defaults to the one the OTEL_* variables
    name (OTLP over HTTP); tests pass an in-memory one with ``batch=False``."""
    global _tracing, _enabled
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    owns_global = exporter is None
    exporter = exporter or _env_exporter()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    _tracing = _Tracing(processor, service or _service_name(), owns_global)
    _enabled = True


def uninstall() -> None:
    """Tracing off again (tests); spans already ended are flushed first."""
    global _tracing, _enabled
    if _tracing is not None:
        _tracing.processor.shutdown()
    _tracing, _enabled = None, False


def _service_name() -> Optional[str]:
    """OTEL_SERVICE_NAME (the SDK reads it) or else the supervisord program: the agent's name,
    ``watchdog``, ``web``; None leaves the SDK's default."""
    if os.environ.get("OTEL_SERVICE_NAME"):
        return None
    return os.environ.get("SUPERVISOR_PROCESS_NAME") or NAMESPACE


def _env_exporter() -> Any:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*


def _active() -> _Tracing:
    if _tracing is None:
        with _setup_lock:
            if _tracing is None:
                install()
    assert _tracing is not None
    return _tracing


# --- the stored context ----------------------------------------------------------------------

def current_context() -> Optional[str]:
    """The current span's context as stored text (None while tracing is off or outside a
    span): handed to a process that sends on the current task's behalf."""
    return _carrier_text() if _enabled else None


def _carrier_text() -> Optional[str]:
    """The current span's context as stored in tasks.traceparent."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return "\n".join(carrier[f] for f in _W3C_FIELDS if carrier.get(f)) or None


def _context_of(text: Optional[str]) -> Any:
    """The stored context as a parent (None: a new trace)."""
    if not text:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    carrier = dict(zip(_W3C_FIELDS, text.split("\n", 1)))
    return TraceContextTextMapPropagator().extract(carrier)


# --- the hooks ---------------------------------------------------------------------------------

def sending(what: str, parent: Optional[str] = None) -> Any:
    """Around an enqueue: a PRODUCER span, yielding the context to store with the new tasks
    (``with`` yields None while tracing is off). ``parent``, a stored context (the running
    task's, for a send from its run through another process), is its parent instead of the
    current span."""
    return _sending(what, parent) if _enabled else OFF


@contextlib.contextmanager
def _sending(what: str, parent: Optional[str] = None):
    from opentelemetry.trace import SpanKind
    attributes = {"messaging.system": SYSTEM, "messaging.operation.type": "send"}
    with _active().tracer.start_as_current_span(f"send {what}", kind=SpanKind.PRODUCER,
                                                context=_context_of(parent),
                                                attributes=attributes):
        yield _carrier_text()


def handling(agent: str, task: Any) -> Any:
    """Around an agent's handling of a claimed task: a CONSUMER span, child of the context
    the task was sent with; current while the handler runs and the task completes."""
    return _handling(agent, task) if _enabled else OFF


@contextlib.contextmanager
def _handling(agent: str, task: Any):
    from opentelemetry.trace import SpanKind
    attributes = {"messaging.system": SYSTEM, "messaging.operation.type": "process",
                  "messaging.destination.name": agent, "messaging.message.id": str(task.id),
                  "coffee.task.type": task.type, "coffee.task.sender": task.sender,
                  "coffee.task.attempt": task.attempts}
    with _active().tracer.start_as_current_span(
            f"process {task.type}", context=_context_of(getattr(task, "traceparent", None)),
            kind=SpanKind.CONSUMER, attributes=attributes):
        yield


def lifecycle(agent: Optional[str], kind: str, detail: Mapping[str, Any]) -> None:
    """A watchdog decision or finding (restart, give-up, health warning) as a short span on
    the agent's resource, the decision as its event."""
    if not _enabled or agent is None or kind not in LIFECYCLE_KINDS:
        return
    attributes = {"coffee.agent": agent, "coffee.event": kind,
                  **{f"coffee.{k}": _plain(v) for k, v in detail.items() if v is not None}}
    tracer = _active().agent_tracer(agent)
    with tracer.start_as_current_span(f"watchdog {kind}", attributes={"coffee.agent": agent}) \
            as span:
        span.add_event(kind, attributes)


def _plain(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts: str, bool, int, float; else its text."""
    return value if isinstance(value, (str, bool, int, float)) else str(value)
