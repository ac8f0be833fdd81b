"""A circuit breaker per model (keyed by what it protects: the model, later each backend
of a stage's chain), asyncio-native: closed -> open -> half-open -> closed.

Its ``BreakerPolicy`` (``streams.settings``, one object, set from ``MAILROOM_BREAKER_*``)
says when: it opens when, among the last ``window`` calls, at least ``threshold`` failed
and they are at least ``failure_rate`` of them, the share taken over no fewer than
``min_calls`` calls (as resilience4j's count-based window with its minimum number of
calls): a model that is down opens it after 5 calls (0.5 x 10), while one that fails now
and then (12% transient errors) keeps it closed, also just after a start, when three
unlucky calls of the first five would otherwise be a majority. It stays open for
``cooldown_s``, then lets one trial call through (half-open): its success closes the
breaker, its failure opens it again. Every transition is logged and reported to
``on_transition`` (metrics hook).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from streams.settings import BREAKER, BreakerPolicy

log = logging.getLogger("mailroom.breaker")


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = BREAKER,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[str, State, State], None] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.clock = clock
        self.on_transition = on_transition
        self.state = State.CLOSED
        self.calls: deque[bool] = deque(maxlen=max(policy.window, policy.threshold))  # True: failed
        self.opened_at = 0.0
        self.transitions: list[tuple[State, State]] = []
        self._trial = asyncio.Lock()

    def _move(self, new: State) -> None:
        old, self.state = self.state, new
        self.transitions.append((old, new))
        log.warning("breaker %s: %s -> %s", self.name, old.value, new.value)
        if self.on_transition is not None:
            self.on_transition(self.name, old, new)

    def allow(self) -> bool:
        """May a call go through now? Moves open -> half-open when the cooldown is over."""
        if self.state is State.OPEN and self.clock() - self.opened_at >= self.policy.cooldown_s:
            self._move(State.HALF_OPEN)
        if self.state is State.CLOSED:
            return True
        return self.state is State.HALF_OPEN and not self._trial.locked()

    @property
    def failures(self) -> int:
        """Failures among the last ``window`` calls."""
        return sum(self.calls)

    def success(self) -> None:
        self.calls.append(False)
        if self.state is not State.CLOSED:
            self.calls.clear()
            self._move(State.CLOSED)

    def failure(self) -> None:
        self.calls.append(True)
        failures = self.failures
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED
            and failures >= self.policy.threshold
            and failures >= self.policy.failure_rate * max(len(self.calls), self.policy.min_calls)
        ):
            self.opened_at = self.clock()
            self.calls.clear()
            self._move(State.OPEN)

    @property
    def trial(self) -> asyncio.Lock:
        """Held around the one trial call while half-open."""
        return self._trial
