"""The telemetry of one stage, as hooks the per-message wrapper calls, one per event
(Faust's sensors, FastStream's middlewares): traces, metrics and logs in one place, and
none of it in the wrapper.

::

    message(incoming)        CONSUMER span "process <topic>", parented to the record's context
    on_failure(...)          span status and event, retry/dead-letter metrics, a warning line
    on_routed(...)           outcome and decision on the span, routing metrics, a debug line
    on_send(output)          PRODUCER span "send <topic>"; its context goes into the headers
                             (not for bookkeeping records: budget events, the join's
                             changelog; they carry the CONSUMER span's context instead)

Per message this is the hot path of every stage (``make bench``, scenario 2): the span
attributes that never change are built once per stage and topic, the labelled metric
children are looked up once, the routing line is at debug.

Telemetry never breaks the data path: what it cannot do, it logs.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Self, TypeVar

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from streams.telemetry import metrics
from streams.telemetry.logs import error_summary, redact
from streams.telemetry.tracing import extract, inject, inject_span, messaging_attributes, tracer
from topics import catalog
from topics import headers as h

log = logging.getLogger("mailroom.stage")
Headers = list[tuple[str, bytes]]


class Received(Protocol):
    """What the sensor reads of a record a stage took in (``engine.records.Incoming``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def attempt(self) -> int: ...


class Sent(Protocol):
    """What the sensor reads of a record a stage writes (``engine.records.Output``)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def fold(self) -> object: ...
    def with_headers(self, headers: Headers) -> Self: ...


S = TypeVar("S", bound=Sent)


#: Records that are bookkeeping, not a step of the email: no span of their own.
UNTRACED = frozenset({catalog.BUDGET_SPEND, catalog.JOIN_CHANGELOG})


class StageSensor:
    """Spans, metrics and log lines of one stage's consumer group."""

    def __init__(self, stage: str, group: str, topic: Callable[[str], str]) -> None:
        self.stage = stage
        self.group = group
        self.topic = topic  # catalog name -> the deployment's topic name
        self._consumer_attrs: dict[str, tuple[str, dict[str, Any]]] = {}
        self._producer_attrs: dict[str, tuple[str, dict[str, Any]]] = {}
        self._processed: dict[str, Any] = {}
        self._routed: dict[str, Any] = {}

    def _static(self, topic: str) -> tuple[str, dict[str, Any]]:
        cached = self._consumer_attrs.get(topic)
        if cached is None:
            attrs = messaging_attributes(operation="process", topic=topic, group=self.group)
            attrs["mailroom.stage"] = self.stage
            cached = self._consumer_attrs[topic] = (f"process {topic}", attrs)
        return cached

    def message(self, incoming: Received, message_id: str) -> AbstractContextManager[Span]:
        """The CONSUMER span of ``incoming``, current inside the ``with``."""
        name, static = self._static(incoming.topic)
        attributes = {
            **static,
            "messaging.destination.partition.id": str(incoming.partition),
            "messaging.kafka.offset": incoming.offset,
            "mailroom.message_id": message_id,
            "mailroom.retry.attempt": incoming.attempt,
        }
        if incoming.key:
            attributes["messaging.kafka.message.key"] = incoming.key.decode(
                "utf-8", errors="replace"
            )
        return tracer().start_as_current_span(
            name,
            context=extract(incoming.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )

    def on_failure(
        self,
        span: Span,
        incoming: Received,
        message_id: str,
        exc: BaseException,
        failure: Sent,
        outcome: str,
    ) -> None:
        message = error_summary(exc)
        span.set_status(Status(StatusCode.ERROR, message))
        span.add_event(
            "exception", {"exception.type": type(exc).__name__, "exception.message": message}
        )
        if outcome == "dead_letter":
            metrics.DEAD_LETTERS.labels(self.stage, h.get(failure.headers, h.ERROR_CLASS)).inc()
        else:
            metrics.RETRIES.labels(self.stage, h.get(failure.headers, h.RETRY_ATTEMPT)).inc()
        log.warning(
            "stage %s failed on %s[%d]@%d (attempt %d) -> %s",
            self.stage,
            incoming.topic,
            incoming.partition,
            incoming.offset,
            incoming.attempt,
            failure.topic,
            extra={
                "event": "failure",
                "stage": self.stage,
                "message_id": message_id,
                "outcome": outcome,
                "decision": failure.topic,
                "error_type": type(exc).__name__,
                "error": message,
                "traceback": redact("".join(traceback.format_exception(exc))),
            },
        )

    def on_routed(
        self,
        span: Span,
        incoming: Received,
        message_id: str,
        outcome: str,
        outputs: Sequence[Sent],
        began: float,
    ) -> None:
        decision = ",".join(o.topic for o in outputs)
        span.set_attribute("mailroom.outcome", outcome)
        span.set_attribute("mailroom.decision", decision)
        processed = self._processed.get(outcome)
        if processed is None:
            processed = self._processed[outcome] = metrics.PROCESSED.labels(self.stage, outcome)
        processed.inc()
        for o in outputs:
            routed = self._routed.get(o.topic)
            if routed is None:
                routed = self._routed[o.topic] = metrics.ROUTED.labels(self.stage, o.topic)
            routed.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s -> %s",
                self.stage,
                decision,
                extra={
                    "event": "route",
                    "stage": self.stage,
                    "message_id": message_id,
                    "outcome": outcome,
                    "decision": decision,
                    "latency_ms": round((time.perf_counter() - began) * 1000, 3),
                    "input_size": len(incoming.value or b""),
                },
            )

    def on_send(self, output: S) -> S:
        """The output with the context of its PRODUCER span in its headers; bookkeeping
        records get the current (CONSUMER) span's context, tombstones none."""
        if output.value is None or output.fold is not None:
            return output  # tombstones and folded bookkeeping carry no trace
        if output.topic in UNTRACED:
            return output.with_headers(inject(output.headers))
        cached = self._producer_attrs.get(output.topic)
        if cached is None:
            name = self.topic(output.topic)
            attrs = messaging_attributes(operation="send", topic=name)
            attrs["mailroom.stage"] = self.stage
            cached = self._producer_attrs[output.topic] = (f"send {name}", attrs)
        name, static = cached
        attributes = static
        if output.key:
            attributes = {
                **static,
                "messaging.kafka.message.key": output.key.decode("utf-8", errors="replace"),
            }
        # Not made current: nothing runs inside it; its context goes straight to the headers.
        span = tracer().start_span(name, kind=SpanKind.PRODUCER, attributes=attributes)
        try:
            return output.with_headers(inject_span(output.headers, span))
        finally:
            span.end()
