"""Spans at a few microseconds each: the OpenTelemetry API, the SDK's samplers, processors
and exporters, and a span record of our own in between.

The SDK's span checks and copies every attribute on its way in (``BoundedAttributes``),
takes a lock per attribute and copies the whole span again when it ends: about 30 us for
a span with a dozen attributes on the 2-core bench machine, three spans per message per
hop, half of a hop's CPU (``make bench``, scenario 2). The attributes a stage sets are
ours and of the types OpenTelemetry allows, so ``LeanSpan`` keeps them in a plain dict
(a value of another type is made one it allows, ``None`` is left out, as the SDK does);
it is an SDK ``ReadableSpan`` as it is, so the SDK's ``BatchSpanProcessor`` takes it when
it ends and any exporter (OTLP to Jaeger, the span files) writes it. Samplers are the
SDK's, from the standard ``OTEL_TRACES_SAMPLER`` variables; the default (parent-based,
always on) is decided without a call. Nothing here is private to the SDK.

::

    LeanTracerProvider(resource, sampler, id_generator)    trace.set_tracer_provider(...)
      .add_span_processor(BatchSpanProcessor(exporter))    as with the SDK's provider
      .get_tracer(name) -> LeanTracer                      start_span, start_as_current_span
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_PLAIN = (str, bool, int, float)
_UNSET = Status(StatusCode.UNSET)


def attribute(value: Any) -> AttributeValue | None:
    """``value`` as a type OpenTelemetry allows (a sequence as a tuple of one type); None:
    leave it out."""
    if value is None or isinstance(value, _PLAIN):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Sequence):
        items = [v for v in value if v is not None]
        if all(isinstance(v, _PLAIN) for v in items):
            kinds = {type(v) for v in items}
            if len(kinds) <= 1:
                return tuple(items)
        return tuple(str(v) for v in items)
    return str(value)


def _attributes(given: Mapping[str, Any] | None) -> dict[str, Any]:
    if not given:
        return {}
    found = dict(given)
    for key, value in given.items():
        if not isinstance(value, _PLAIN):
            clean = attribute(value)
            if clean is None:
                del found[key]
            else:
                found[key] = clean
    return found


class LeanSpan(trace_api.Span, ReadableSpan):
    """A recording span: written to until it ends, then handed to the span processors
    as the ``ReadableSpan`` it is (never written to again)."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link],
        start_time: int,
        tracer: LeanTracer,
    ) -> None:
        # ReadableSpan's fields, set directly (its __init__ makes a resource when none)
        self._name = name
        self._context = self._own = context
        self._parent = parent
        self._kind = kind
        self._attributes = self._writable = attributes
        self._events: list[Event] = []
        self._links = tuple(links)
        self._start_time = start_time
        self._end_time: int | None = None
        self._status = _UNSET
        self._resource = tracer.provider.resource
        self._instrumentation_scope = tracer.scope
        self._instrumentation_info = None
        self._processors = tracer.provider.processors

    # -- the API's Span ---------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._own

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is None:
            if not isinstance(value, _PLAIN):
                value = attribute(value)
                if value is None:
                    return
            self._writable[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is None:
            self._writable.update(_attributes(attributes))

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> None:
        if self._end_time is None:
            self._events.append(Event(name, _attributes(attributes), timestamp or time_ns()))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, _attributes(attributes)))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return  # an OK status is final, as in the SDK
        if isinstance(status, Status):
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description if status is StatusCode.ERROR else None)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        found: dict[str, Any] = {
            "exception.type": f"{module}.{kind.__qualname__}"
            if module and module != "builtins"
            else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            found.update(attributes)
        self.add_event("exception", found, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time or time_ns()
        for processor in self._processors:
            processor.on_end(self)

    # ReadableSpan reads ``events`` and ``links`` as sequences
    @property
    def events(self) -> Sequence[Event]:
        return tuple(self._events)

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The span's own dict, not a read-only view of it made per call: nothing writes
        to a span that has ended (the exporters read them once each, on their thread)."""
        return self._writable

    def __repr__(self) -> str:
        return f"LeanSpan({self._name!r}, {self._own.span_id:016x})"


class _Current:
    """``start_as_current_span``'s context manager (the API's ``use_span``, as a class):
    the span is current inside, records what escapes (an ``Exception``), ends on exit."""

    __slots__ = ("end_on_exit", "record", "span", "status", "token")

    def __init__(self, span: trace_api.Span, end_on_exit: bool, record: bool, status: bool) -> None:
        self.span = span
        self.end_on_exit = end_on_exit
        self.record = record
        self.status = status
        self.token: object = None

    def __enter__(self) -> trace_api.Span:
        self.token = context_api.attach(set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            context_api.detach(self.token)  # type: ignore[arg-type]
            if isinstance(exc, Exception) and self.span.is_recording():
                if self.record:
                    self.span.record_exception(exc, escaped=True)
                if self.status:
                    description = f"{type(exc).__name__}: {exc}"
                    self.span.set_status(Status(StatusCode.ERROR, description))
        finally:
            if self.end_on_exit:
                self.span.end()


class LeanTracer(trace_api.Tracer):
    """Makes ``LeanSpan`` s (or non-recording spans for traces the sampler leaves out)."""

    def __init__(self, provider: LeanTracerProvider, scope: InstrumentationScope) -> None:
        self.provider = provider
        self.scope = scope

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        provider = self.provider
        parent: SpanContext | None = trace_api.get_current_span(context).get_span_context()
        assert parent is not None
        ids = provider.id_generator
        if parent.is_valid:
            trace_id = parent.trace_id
        else:
            trace_id, parent = ids.generate_trace_id(), None
        found = _attributes(attributes)
        trace_state: TraceState | None
        if provider.default_sampler:  # parent-based, always on
            sampled = parent is None or parent.trace_flags.sampled
            recording = sampled
            trace_state = parent.trace_state if parent is not None else None
        else:
            result = provider.sampler.should_sample(
                context, trace_id, name, kind, found or None, links
            )
            sampled = bool(result.decision.is_sampled())  # type: ignore[no-untyped-call]
            recording = bool(result.decision.is_recording())  # type: ignore[no-untyped-call]
            trace_state = result.trace_state
            if result.attributes:
                found.update(result.attributes)
        own = SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED if sampled else _NOT_SAMPLED,
            trace_state=trace_state,
        )
        if not recording:
            return NonRecordingSpan(own)
        span = LeanSpan(name, own, parent, kind, found, links or (), start_time or time_ns(), self)
        for processor in provider.processors:
            processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        return span

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _Current:
        span = self.start_span(name, context, kind, attributes, links, start_time, record_exception)
        return _Current(span, end_on_exit, record_exception, set_status_on_exception)


class LeanTracerProvider(trace_api.TracerProvider):
    """The provider of ``LeanTracer`` s, with the SDK's samplers and span processors."""

    def __init__(
        self,
        resource: Resource | None = None,
        sampler: Sampler | None = None,
        id_generator: IdGenerator | None = None,
    ) -> None:
        self.resource = resource or Resource.create({})
        self.sampler = sampler or DEFAULT_ON
        self.default_sampler = self.sampler is DEFAULT_ON
        self.id_generator = id_generator or RandomIdGenerator()
        self.processors: tuple[SpanProcessor, ...] = ()
        self._lock = threading.Lock()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> LeanTracer:
        scope = InstrumentationScope(
            instrumenting_module_name, instrumenting_library_version, schema_url
        )
        return LeanTracer(self, scope)

    def add_span_processor(self, processor: SpanProcessor) -> None:
        with self._lock:
            self.processors = (*self.processors, processor)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()
