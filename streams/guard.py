"""Every model call goes through here: budget, circuit breaker, fault injection, fallback.

::

    budget over a cap   -> fallback model if the stage has one, else BudgetExceeded
    breaker open        -> fallback model if the stage has one, else ModelUnavailable
    call fails          -> breaker counts it; the error goes on to the retry tiers
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.trace import Status, StatusCode

from processors.errors import Unavailable
from streams.breaker import CircuitBreaker, State
from streams.budget import Budget, BudgetExceeded
from streams.faults import FaultInjector
from streams.tracing import tracer

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
    fallbacks: dict[str, str] = field(default_factory=dict)
    on_transition: Callable[[str, State, State], None] | None = None
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, stage: str) -> CircuitBreaker:
        if stage not in self.breakers:
            self.breakers[stage] = CircuitBreaker(
                stage,
                threshold=self.threshold,
                cooldown_s=self.cooldown_s,
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
        with tracer().start_as_current_span(f"model {stage}", attributes=attributes) as span:
            try:
                await self.faults.before_call(stage)
                result = fn()
            except Exception as exc:  # any failure of the model counts against its breaker
                breaker.failure()
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
                raise
            else:
                breaker.success()
            finally:
                if trial:
                    breaker.trial.release()
        event = self.budget.charge(stage, cost, message_id) if cost else None
        return Call(result, model, cost, event)

    def _fallback(self, stage: str, fallback: Callable[[], T], why: str) -> Call:
        model = self.fallbacks[stage]
        attributes = {
            "mailroom.stage": stage,
            "mailroom.model": model,
            "mailroom.fallback_because": why,
        }
        with tracer().start_as_current_span(f"model {stage}", attributes=attributes):
            return Call(fallback(), model, 0.0)
