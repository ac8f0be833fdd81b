"""Every model call goes through here: budget, circuit breaker, fault injection, fallback.

::

    budget over a cap   -> the stage's fallback model if it may use one, else BudgetExceededError
    breaker open        -> the stage's fallback model if it may use one, else BreakerOpenError
    call fails          -> the breaker counts it; the error goes on to the retry tiers

Each model has its own breaker, keyed by the model's name; a stage names its fallback
(``Fallback``) where it calls, and ``MAILROOM_FALLBACKS`` says which stages may use theirs.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar, cast

from opentelemetry.trace import Status, StatusCode

from streams.errors import BreakerOpenError, BudgetExceededError
from streams.guard.breaker import CircuitBreaker, State
from streams.guard.budget import Budget
from streams.guard.faults import FaultInjector
from streams.settings import BREAKER, BreakerPolicy
from streams.telemetry import metrics
from streams.telemetry.logs import error_summary
from streams.telemetry.tracing import tracer

log = logging.getLogger("mailroom.guard")
T = TypeVar("T")
R = TypeVar("R")


class Fallback(NamedTuple, Generic[T]):
    """A free local model a stage uses while its own is refused."""

    model: str
    fn: Callable[[], T]


@dataclass
class Call(Generic[T]):
    """What a guarded call produced: the result, the model that made it, its cost event,
    and for an LLM its endpoint and tokens."""

    result: T
    model: str
    cost: float
    spend_event: tuple[str, bytes, bytes] | None = None
    endpoint: str = ""
    tokens: tuple[int, int] = (0, 0)


class Metered(Protocol):
    """What an LLM call reports of itself (``streams.models.llm.Completion``)."""

    @property
    def model(self) -> str: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...


@dataclass
class ModelGate:
    budget: Budget
    faults: FaultInjector
    policy: BreakerPolicy = BREAKER
    fallbacks: frozenset[str] = frozenset()  # stages that may use their fallback
    on_transition: Callable[[str, State, State], None] | None = None
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, model: str) -> CircuitBreaker:
        """The breaker of ``model``, made on first use."""
        if model not in self.breakers:
            self.breakers[model] = CircuitBreaker(
                model, self.policy, on_transition=self.on_transition
            )
        return self.breakers[model]

    async def call(
        self,
        stage: str,
        model: str,
        fn: Callable[[], T | Awaitable[T]],
        *,
        message_id: str,
        email_cost: float,
        fallback: Fallback[T] | None = None,
    ) -> Call[T]:
        usable = fallback if stage in self.fallbacks else None
        try:
            cost = self.budget.check(stage, email_cost)
        except BudgetExceededError:
            if usable is None:
                raise
            return self._fallback(stage, usable, "budget_exceeded")
        breaker = self.breaker(model)
        if not breaker.allow():
            if usable is not None:
                return self._fallback(stage, usable, "breaker_open")
            metrics.MODEL_CALLS.labels(stage, model, "unavailable").inc()
            raise BreakerOpenError(f"{stage} model {model} is unavailable (breaker open)")
        attributes = {
            "mailroom.stage": stage,
            "mailroom.model": model,
            "mailroom.breaker": breaker.state.value,
            "mailroom.cost": cost,
        }

        async def run() -> T:
            result = fn()
            if inspect.isawaitable(result):  # a micro-batched local model
                return cast(T, await result)
            return result

        with tracer().start_as_current_span(f"model {stage}", attributes=attributes) as span:
            try:
                result = await self._through(stage, model, breaker, message_id, run)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, error_summary(exc)))
                raise
        metrics.child(metrics.COST, stage).inc(cost)
        event = self.budget.charge(stage, cost, message_id) if cost else None
        return Call(result, model, cost, event)

    async def _through(
        self,
        stage: str,
        name: str,
        breaker: CircuitBreaker,
        message_id: str,
        fn: Callable[[], Awaitable[R]],
    ) -> R:
        """``fn`` through ``breaker`` and the fault injector: one trial call at a time
        while half-open; every failure counts against the breaker, and is logged."""
        trial = breaker.state is State.HALF_OPEN
        if trial:
            await breaker.trial.acquire()
        began = time.perf_counter()
        try:
            await self.faults.before_call(stage)
            result = await fn()
        except Exception as exc:  # any failure of the model counts against its breaker
            breaker.failure()
            self._observe(stage, name, began, "error", message_id, type(exc).__name__)
            raise
        else:
            breaker.success()
        finally:
            if trial:
                breaker.trial.release()
        self._observe(stage, name, began, "ok", message_id)
        return result

    async def call_endpoint(
        self,
        stage: str,
        endpoint: str,
        fn: Callable[[], Awaitable[tuple[T, Metered]]],
        *,
        message_id: str,
        email_cost: float,
        worst_case: float,
    ) -> Call[T]:
        """An LLM call through the endpoint's own breaker and the budget. It is not made
        when its worst case (the prompt and every output token) would pass a cap; its
        cost is what the endpoint reports it used, times the endpoint's prices."""
        self.budget.allow(stage, worst_case, email_cost)
        breaker = self.breaker(endpoint)
        if not breaker.allow():
            metrics.MODEL_CALLS.labels(stage, endpoint, "unavailable").inc()
            raise BreakerOpenError(f"{stage} endpoint {endpoint} is unavailable (breaker open)")
        result, metered = await self._through(stage, endpoint, breaker, message_id, fn)
        cost = metered.cost_usd
        tokens = (metered.input_tokens, metered.output_tokens)
        metrics.COST.labels(stage).inc(cost)
        metrics.LLM_TOKENS.labels(stage, metered.model, "input").inc(tokens[0])
        metrics.LLM_TOKENS.labels(stage, metered.model, "output").inc(tokens[1])
        metrics.LLM_COST.labels(stage, metered.model).inc(cost)
        event = self.budget.charge(
            stage,
            cost,
            message_id,
            endpoint=endpoint,
            model=metered.model,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )
        return Call(result, metered.model, cost, event, endpoint, tokens)

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
        metrics.child(metrics.MODEL_LATENCY, stage, model).observe(seconds)
        metrics.child(metrics.MODEL_CALLS, stage, model, outcome).inc()
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

    def _fallback(self, stage: str, fallback: Fallback[T], why: str) -> Call[T]:
        model = fallback.model
        attributes = {
            "mailroom.stage": stage,
            "mailroom.model": model,
            "mailroom.fallback_because": why,
        }
        began = time.perf_counter()
        with tracer().start_as_current_span(f"model {stage}", attributes=attributes):
            result = fallback.fn()
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
