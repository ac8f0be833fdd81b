"""Every model call goes through here: budget, circuit breaker, fault injection, fallback.

::

    budget over a cap   -> fallback model if the stage has one, else BudgetExceeded
    breaker open        -> fallback model if the stage has one, else ModelUnavailable
    call fails          -> breaker counts it; the error goes on to the retry tiers
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.trace import Status, StatusCode

from processors.errors import Unavailable
from streams.guard.breaker import CircuitBreaker, State
from streams.guard.budget import Budget, BudgetExceeded
from streams.guard.faults import FaultInjector
from streams.telemetry import metrics
from streams.telemetry.logs import redact
from streams.telemetry.tracing import tracer

log = logging.getLogger("mailroom.guard")
T = TypeVar("T")


class ModelUnavailable(Unavailable):
    """The model's breaker is open and the stage has no fallback: escalate, do not retry."""

    retriable = False


@dataclass
class Call:
    """What a guarded call produced: the result, the model that made it, its cost event."""

    result: Any
    model: str
    cost: float
    spend_event: tuple[str, bytes, bytes] | None = None


@dataclass
class ModelGate:
    budget: Budget
    faults: FaultInjector
    threshold: int = 3
    cooldown_s: float = 300.0
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    fallbacks: dict[str, str] = field(default_factory=dict)
    on_transition: Callable[[str, State, State], None] | None = None
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, stage: str) -> CircuitBreaker:
        if stage not in self.breakers:
            self.breakers[stage] = CircuitBreaker(
                stage,
                threshold=self.threshold,
                cooldown_s=self.cooldown_s,
                failure_rate=self.failure_rate,
                window=self.window,
                min_calls=self.min_calls,
                on_transition=self.on_transition,
            )
        return self.breakers[stage]

    async def call(
        self,
        stage: str,
        model: str,
        fn: Callable[[], T],
        *,
        message_id: str,
        email_cost: float,
        fallback: Callable[[], T] | None = None,
    ) -> Call:
        fallback = fallback if stage in self.fallbacks else None
        try:
            cost = self.budget.check(stage, email_cost)
        except BudgetExceeded:
            if fallback is None:
                raise
            return self._fallback(stage, fallback, "budget_exceeded")
        breaker = self.breaker(stage)
        if not breaker.allow():
            if fallback is not None:
                return self._fallback(stage, fallback, "breaker_open")
            metrics.MODEL_CALLS.labels(stage, model, "unavailable").inc()
            raise ModelUnavailable(f"{stage} model {model} is unavailable (breaker open)")
        trial = breaker.state is State.HALF_OPEN
        if trial:
            await breaker.trial.acquire()
        attributes = {
            "mailroom.stage": stage,
            "mailroom.model": model,
            "mailroom.breaker": breaker.state.value,
            "mailroom.cost": cost,
        }
        began = time.perf_counter()
        with tracer().start_as_current_span(f"model {stage}", attributes=attributes) as span:
            try:
                await self.faults.before_call(stage)
                result = fn()
            except Exception as exc:  # any failure of the model counts against its breaker
                breaker.failure()
                message = redact(f"{type(exc).__name__}: {exc}")[:200]
                span.set_status(Status(StatusCode.ERROR, message))
                self._observe(stage, model, began, "error", message_id, type(exc).__name__)
                raise
            else:
                breaker.success()
            finally:
                if trial:
                    breaker.trial.release()
        self._observe(stage, model, began, "ok", message_id)
        metrics.COST.labels(stage).inc(cost)
        event = self.budget.charge(stage, cost, message_id) if cost else None
        return Call(result, model, cost, event)

    @staticmethod
    def _observe(
        stage: str,
        model: str,
        began: float,
        outcome: str,
        message_id: str,
        error_type: str | None = None,
    ) -> None:
        seconds = time.perf_counter() - began
        metrics.MODEL_LATENCY.labels(stage, model).observe(seconds)
        metrics.MODEL_CALLS.labels(stage, model, outcome).inc()
        log.info(
            "model call %s %s: %s",
            stage,
            model,
            outcome,
            extra={
                "event": "model_call",
                "stage": stage,
                "model": model,
                "message_id": message_id,
                "outcome": outcome,
                "latency_ms": round(seconds * 1000, 3),
                "error_type": error_type,
            },
        )

    def _fallback(self, stage: str, fallback: Callable[[], T], why: str) -> Call:
        model = self.fallbacks[stage]
        attributes = {
            "mailroom.stage": stage,
            "mailroom.model": model,
            "mailroom.fallback_because": why,
        }
        began = time.perf_counter()
        with tracer().start_as_current_span(f"model {stage}", attributes=attributes):
            result = fallback()
        metrics.MODEL_CALLS.labels(stage, model, f"fallback_{why}").inc()
        log.info(
            "model call %s %s: fallback (%s)",
            stage,
            model,
            why,
            extra={
                "event": "model_call",
                "stage": stage,
                "model": model,
                "outcome": f"fallback_{why}",
                "latency_ms": round((time.perf_counter() - began) * 1000, 3),
            },
        )
        return Call(result, model, 0.0)
