"""One trace per email across every hop: W3C context in Kafka headers, OpenTelemetry spans.

Per hop, the wrapper opens a CONSUMER span ``process <topic>`` whose parent is the context
extracted from the record's headers (the aiokafka instrumentation ends its span before our
code runs, so we do it here); each model call is a child span; each output gets a PRODUCER
span ``send <topic>`` whose context is injected into the output's headers, so the next hop,
a retry, a dead letter and a replay all continue the same trace.

Export: OTLP when the standard ``OTEL_EXPORTER_OTLP_*`` variables are set (protocol from
``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf`` or ``grpc``), else JSON lines in
``<data dir>/traces/spans-<pid>.jsonl`` that ``mailroom trace`` reads. Always through a
BatchSpanProcessor: an unreachable collector never slows or breaks the pipeline; telemetry
errors are logged and swallowed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)

from streams.telemetry.spans import LeanTracerProvider
from topics import headers as h

log = logging.getLogger("mailroom.tracing")
TRACER_NAME = "mailroom"
Headers = list[tuple[str, bytes]]


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        value = h.get(carrier, key)
        return [value] if value is not None else None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key] = value


GETTER = _HeaderGetter()
SETTER = _HeaderSetter()


#: The W3C trace context, as the default propagator reads and writes it.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_TRACEPARENT_MAX = 512
#: Only the default propagators (W3C trace context and baggage) take the short way.
_DEFAULT_PROPAGATION = os.environ.get("OTEL_PROPAGATORS", "tracecontext,baggage").replace(
    " ", ""
) in ("tracecontext,baggage", "tracecontext")


def extract(headers: Headers) -> Context:
    """The context of a record's ``traceparent``. A record with only a traceparent (every
    record of ours without baggage) is read here, as the W3C propagator reads it; anything
    more, or other propagators (``OTEL_PROPAGATORS``), through the configured ones."""
    if not _DEFAULT_PROPAGATION:
        return propagate.extract(headers, getter=GETTER)
    parent = None
    for key, value in headers:
        if key == "traceparent" and value is not None:
            parent = value
        elif key in ("tracestate", "baggage"):
            return propagate.extract(headers, getter=GETTER)
    if not parent or len(parent) > _TRACEPARENT_MAX:
        return Context()
    match = _TRACEPARENT.match(parent.decode("utf-8", errors="replace"))
    if match is None:
        return Context()
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return Context()
    remote = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def inject(headers: Headers, context: Context | None = None) -> Headers:
    """``headers`` with ``traceparent``/``tracestate`` of ``context`` (default: current)."""
    carrier: dict[str, str] = {}
    try:
        if _DEFAULT_PROPAGATION and not baggage.get_all(context):
            span = trace.get_current_span(context).get_span_context()
            if span.is_valid:
                carrier["traceparent"] = (
                    f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"
                )
                if span.trace_state:
                    carrier["tracestate"] = span.trace_state.to_header()
        else:
            propagate.inject(carrier, context=context, setter=SETTER)
    except Exception:  # telemetry never breaks the data path
        log.exception("could not inject the trace context")
        return headers
    return h.replace(headers, carrier) if carrier else headers


def inject_span(headers: Headers, span: Span) -> Headers:
    """``headers`` with the trace context of ``span`` (with the current context's
    baggage): ``inject(headers, set_span_in_context(span))``, without making a context
    when there is no baggage and the default propagators are on."""
    if not _DEFAULT_PROPAGATION or baggage.get_all():
        return inject(headers, trace.set_span_in_context(span))
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return headers
    carrier = {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"}
    if ctx.trace_state:
        carrier["tracestate"] = ctx.trace_state.to_header()
    return h.replace(headers, carrier)


@functools.cache
def tracer() -> trace.Tracer:
    """One tracer per process (a proxy until the provider is installed, then the real one)."""
    return trace.get_tracer(TRACER_NAME)


class JsonLinesExporter(SpanExporter):
    """Spans as one JSON object per line, for ``mailroom trace`` when no collector is set."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            lines = b"".join(map(_line, spans))
            with self._lock, self.path.open("ab") as handle:
                handle.write(lines)
        except Exception:
            log.exception("could not write spans to %s", self.path)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _line(span: ReadableSpan) -> bytes:
    record = span_record(span)
    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE)
    except (orjson.JSONEncodeError, TypeError):  # e.g. an integer past 64 bits
        return (json.dumps(record, default=str) + "\n").encode()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A span as ``mailroom trace`` reads it (written by the batch processor's thread,
    which holds the GIL the stages need: ids as hex by ``bytes.hex``, the names of kinds
    and status codes and the service of a resource looked up once)."""
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    attributes = span.attributes
    return {
        "trace_id": ctx.trace_id.to_bytes(16, "big").hex() if ctx else "",
        "span_id": ctx.span_id.to_bytes(8, "big").hex() if ctx else "",
        "parent_id": parent.span_id.to_bytes(8, "big").hex() if parent else None,
        "name": span.name,
        "kind": _NAMES[span.kind],
        "start": span.start_time,
        "end": span.end_time,
        "status": _NAMES[status.status_code],
        "error": status.description,
        # a plain dict as it is (a span's attributes are never written after it ended)
        "attributes": attributes if type(attributes) is dict else dict(attributes or {}),
        "links": [
            f"{link.context.trace_id:032x}/{link.context.span_id:016x}" for link in span.links
        ],
        "service": _service(span.resource),
    }


_NAMES: dict[Any, str] = {k: k.name for k in (*SpanKind, *StatusCode)}


_SERVICES: dict[int, tuple[Resource, Any]] = {}  # by identity: a Resource hashes its JSON


def _service(resource: Resource) -> Any:
    known = _SERVICES.get(id(resource))
    if known is None or known[0] is not resource:
        known = _SERVICES[id(resource)] = (
            resource,
            (resource.attributes or {}).get("service.name"),
        )
    return known[1]


def span_file(data_dir: Path) -> Path:
    return data_dir / "traces" / f"spans-{os.getpid()}.jsonl"


def otlp_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    if not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


_provider: LeanTracerProvider | None = None


def setup_tracing(
    service: str, data_dir: Path, *, enabled: bool = True
) -> LeanTracerProvider | None:
    """Install the tracer provider once per process (idempotent): lean spans
    (``streams.telemetry.spans``) with the SDK's sampler from the ``OTEL_TRACES_SAMPLER``
    variables, its batch processor and an exporter."""
    global _provider
    if _provider is not None or not enabled:
        return _provider
    exporter = otlp_exporter(os.environ) or JsonLinesExporter(span_file(data_dir))
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    sdk = TracerProvider(resource=resource, shutdown_on_exit=False)  # reads the sampler's env
    provider = LeanTracerProvider(resource, sdk.sampler)
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            # every span kept under load: room for seconds of them, written in big batches
            max_queue_size=int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", 1 << 17)),
            max_export_batch_size=int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048)),
            schedule_delay_millis=float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", 500)),
        )
    )
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    if _provider is not None:
        try:
            _provider.shutdown()
        except Exception:
            log.exception("tracing shutdown failed")


def messaging_attributes(
    *,
    operation: str,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """OpenTelemetry messaging semantic conventions for Kafka."""
    attrs: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.name": operation,
        "messaging.operation.type": "process" if operation == "process" else "send",
        "messaging.destination.name": topic,
    }
    if partition is not None:
        attrs["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attrs["messaging.kafka.offset"] = offset
    if key:
        attrs["messaging.kafka.message.key"] = key.decode("utf-8", errors="replace")
    if group:
        attrs["messaging.consumer.group.name"] = group
    return attrs


@contextmanager
def producer_span(topic: str, key: bytes | None, **attributes: Any) -> Iterator[Span]:
    with tracer().start_as_current_span(
        f"send {topic}",
        kind=SpanKind.PRODUCER,
        attributes={**messaging_attributes(operation="send", topic=topic, key=key), **attributes},
    ) as span:
        yield span
