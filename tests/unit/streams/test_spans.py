"""Lean spans and the short way through the W3C propagator: what the SDK's own parts
(propagator, processors, exporters, samplers) make of them is what they make of the
SDK's spans."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)

from streams.telemetry import tracing
from streams.telemetry.spans import LeanSpan, LeanTracerProvider
from streams.telemetry.tracing import GETTER, SETTER

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def recorded(sampler: object = None) -> tuple[LeanTracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = LeanTracerProvider(sampler=sampler)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def context_of(ctx: Context) -> tuple[int, int, int, bool, str] | None:
    span = trace.get_current_span(ctx).get_span_context()
    if not span.is_valid:
        return None
    return (
        span.trace_id,
        span.span_id,
        int(span.trace_flags),
        span.is_remote,
        str(span.trace_state),
    )


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", f"00-{TRACE}-{SPAN}-01".encode())],
        [("traceparent", f"00-{TRACE}-{SPAN}-00".encode())],
        [("traceparent", f"  00-{TRACE}-{SPAN}-01\t".encode())],
        [("traceparent", f"01-{TRACE}-{SPAN}-01-future".encode())],
        [("traceparent", f"00-{TRACE}-{SPAN}-01-extra".encode())],  # 00 takes nothing more
        [("traceparent", f"ff-{TRACE}-{SPAN}-01".encode())],
        [("traceparent", f"00-{'0' * 32}-{SPAN}-01".encode())],
        [("traceparent", f"00-{TRACE}-{'0' * 16}-01".encode())],
        [("traceparent", f"00-{TRACE.upper()}-{SPAN}-01".encode())],
        [("traceparent", b"garbage")],
        [("traceparent", b"")],
        [("traceparent", f"00-{TRACE}-{SPAN}-01".encode() + b"-" * 600)],
        [("traceparent", f"00-{TRACE}-{SPAN}-01".encode()), ("tracestate", b"k=v,x=y")],
        [("traceparent", f"00-{TRACE}-{SPAN}-01".encode()), ("baggage", b"user=7")],
        [("other", b"1")],
        [],
    ],
)
def test_a_record_s_context_is_read_as_the_w3c_propagator_reads_it(
    headers: list[tuple[str, bytes]],
) -> None:
    ours = tracing.extract(headers)
    theirs = propagate.extract(headers, getter=GETTER)
    assert context_of(ours) == context_of(theirs)
    assert baggage.get_all(ours) == baggage.get_all(theirs)


@pytest.mark.parametrize(
    ("flags", "state"),
    [(TraceFlags(1), None), (TraceFlags(0), None), (TraceFlags(1), TraceState([("k", "v")]))],
)
def test_the_context_written_into_headers_is_what_the_w3c_propagator_writes(
    flags: TraceFlags, state: TraceState | None
) -> None:
    span = NonRecordingSpan(
        SpanContext(int(TRACE, 16), int(SPAN, 16), False, trace_flags=flags, trace_state=state)
    )
    ctx = trace.set_span_in_context(span)
    theirs: dict[str, str] = {}
    propagate.inject(theirs, context=ctx, setter=SETTER)
    assert dict((k, v.decode()) for k, v in tracing.inject([("keep", b"1")], ctx)) == {
        "keep": "1",
        **theirs,
    }
    with_baggage = baggage.set_baggage("user", "7", ctx)
    theirs = {}
    propagate.inject(theirs, context=with_baggage, setter=SETTER)
    assert dict((k, v.decode()) for k, v in tracing.inject([], with_baggage)) == theirs
    assert "baggage" in theirs
    assert tracing.inject([("keep", b"1")], Context()) == [("keep", b"1")]  # no span: nothing


def test_spans_nest_and_reach_the_sdk_processors_with_their_attributes_and_status() -> None:
    provider, exporter = recorded()
    tracer = provider.get_tracer("test")
    parent = tracing.extract([("traceparent", f"00-{TRACE}-{SPAN}-01".encode())])
    with tracer.start_as_current_span(
        "process t",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={"a": 1, "gone": None, "many": ["x", "y"], "raw": b"k"},
    ) as outer:
        outer.set_attribute("mailroom.outcome", "ok")
        with (
            pytest.raises(ValueError, match="model broke"),
            tracer.start_as_current_span("model m"),
        ):
            raise ValueError("model broke")
        sent = tracer.start_span("send u", kind=SpanKind.PRODUCER)
        sent.end()
    model, send, process = exporter.get_finished_spans()
    assert [s.name for s in (model, send, process)] == ["model m", "send u", "process t"]
    assert isinstance(process, LeanSpan)
    assert process.context.trace_id == int(TRACE, 16)
    assert process.parent is not None
    assert process.parent.span_id == int(SPAN, 16)
    assert model.parent == process.context
    assert send.parent == process.context
    assert dict(process.attributes or {}) == {
        "a": 1,
        "many": ("x", "y"),
        "raw": "k",
        "mailroom.outcome": "ok",
    }
    assert process.kind is SpanKind.CONSUMER
    assert model.status.status_code is StatusCode.ERROR
    assert model.status.description == "ValueError: model broke"
    assert [e.name for e in model.events] == ["exception"]
    assert model.events[0].attributes["exception.type"] == "ValueError"  # type: ignore[index]
    assert process.end_time is not None
    assert process.start_time is not None
    assert process.end_time >= process.start_time
    process.set_attribute("late", 1)  # ended: no longer written to
    assert "late" not in (process.attributes or {})


def test_the_otlp_encoder_writes_a_lean_span_as_it_writes_the_sdk_s() -> None:
    provider, exporter = recorded()
    with provider.get_tracer("test").start_as_current_span("process t", attributes={"k": "v"}):
        pass
    (span,) = exporter.get_finished_spans()
    request = encode_spans([span])
    (encoded,) = request.resource_spans[0].scope_spans[0].spans
    assert encoded.name == "process t"
    assert encoded.trace_id == span.context.trace_id.to_bytes(16, "big")
    assert [(a.key, a.value.string_value) for a in encoded.attributes] == [("k", "v")]


def test_traces_the_sampler_leaves_out_are_not_recorded() -> None:
    provider, exporter = recorded(ParentBased(ALWAYS_OFF))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        assert not root.is_recording()
        assert not root.get_span_context().trace_flags.sampled
    assert exporter.get_finished_spans() == ()
    # the default sampler follows the parent: an unsampled parent, an unrecorded child
    provider, exporter = recorded()
    unsampled = tracing.extract([("traceparent", f"00-{TRACE}-{SPAN}-00".encode())])
    with provider.get_tracer("test").start_as_current_span("child", context=unsampled) as child:
        assert not child.is_recording()
        assert child.get_span_context().trace_id == int(TRACE, 16)
    assert exporter.get_finished_spans() == ()
