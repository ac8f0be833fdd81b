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

from processors.errors import Unavailable
from streams.breaker import CircuitBreaker, State
from streams.budget import Budget, BudgetExceeded
from streams.faults import FaultInjector

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
            return Call(fallback(), self.fallbacks[stage], 0.0)
        breaker = self.breaker(stage)
        if not breaker.allow():
            if fallback is not None:
                return Call(fallback(), self.fallbacks[stage], 0.0)
            raise ModelUnavailable(f"{stage} model {model} is unavailable (breaker open)")
        trial = breaker.state is State.HALF_OPEN
        if trial:
            await breaker.trial.acquire()
        try:
            await self.faults.before_call(stage)
            result = fn()
        except Exception:  # any failure of the model counts against its breaker
            breaker.failure()
            raise
        else:
            breaker.success()
        finally:
            if trial:
                breaker.trial.release()
        event = self.budget.charge(stage, cost, message_id) if cost else None
        return Call(result, model, cost, event)
