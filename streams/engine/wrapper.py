"""The per-message wrapper: the one place a stage's errors are handled.

It calls the handler inside the sensor's CONSUMER span; any exception becomes a retry or
a dead letter (``streams.engine.retry``) and nothing escapes; every output gets its
PRODUCER span and trace context. Tracing, metrics and logs are the sensor's hooks
(``streams.telemetry.sensor``), not code here.
"""

from __future__ import annotations

import time

from streams.engine.records import Handler, Incoming, Output
from streams.engine.retry import route_failure
from streams.telemetry.sensor import StageSensor
from topics import headers as h
from topics.catalog import StageSpec


class Wrapper:
    """A stage's handler with its failure routing and telemetry around it."""

    def __init__(
        self,
        spec: StageSpec,
        handler: Handler,
        delays_s: tuple[float, ...],
        sensor: StageSensor,
    ) -> None:
        self.spec = spec
        self.handler = handler
        self.delays_s = delays_s
        self.sensor = sensor

    async def __call__(self, incoming: Incoming) -> list[Output]:
        message_id = h.get(incoming.headers, h.MESSAGE_ID) or (incoming.key or b"").decode(
            "utf-8", errors="replace"
        )
        began = time.perf_counter()
        with self.sensor.message(incoming, message_id) as span:
            try:
                outputs = await self.handler(incoming)
                outcome = "ok"
            except Exception as exc:
                failure = route_failure(self.spec, incoming, exc, self.delays_s)
                outcome = "dead_letter" if failure.topic == self.spec.dlq_topic else "retry"
                self.sensor.on_failure(span, incoming, message_id, exc, failure, outcome)
                outputs = [failure]
            self.sensor.on_routed(span, incoming, message_id, outcome, outputs, began)
            return [self.sensor.on_send(o) for o in outputs]
