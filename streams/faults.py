"""Fault injection for any stage's model, from one setting.

    MAILROOM_FAULTS="classify:error_rate=0.12,latency_ms=200;generate:down_for_s=30"

``error_rate``: the share of calls that fail (retriable); ``latency_ms``: added to every
call, a number or a range ``200..2000`` (uniform); ``down_for_s``: every call fails for
that long after the worker started. Failures raise ``InjectedFault`` (``Unavailable``).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from processors.errors import Unavailable


class InjectedFault(Unavailable):
    """A failure injected on purpose by MAILROOM_FAULTS."""


@dataclass(frozen=True)
class Fault:
    error_rate: float = 0.0
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    down_for_s: float = 0.0


def parse_faults(spec: str) -> dict[str, Fault]:
    """``stage:key=value,key=value;stage:...`` -> {stage: Fault}. Raises ValueError."""
    faults: dict[str, Fault] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        stage, _, options = part.partition(":")
        values: dict[str, float] = {}
        for option in filter(None, (o.strip() for o in options.split(","))):
            key, _, raw = option.partition("=")
            key = key.strip()
            if key == "latency_ms":
                low, _, high = raw.partition("..")
                values["latency_min_ms"] = float(low)
                values["latency_max_ms"] = float(high or low)
            elif key in ("error_rate", "down_for_s"):
                values[key] = float(raw)
            else:
                raise ValueError(
                    f"unknown fault option {key!r} for {stage!r}; use "
                    "error_rate, latency_ms, down_for_s"
                )
        if not 0.0 <= values.get("error_rate", 0.0) <= 1.0:
            raise ValueError(f"error_rate for {stage!r} must be between 0 and 1")
        faults[stage.strip()] = Fault(**values)
    return faults


class FaultInjector:
    def __init__(self, faults: dict[str, Fault], *, seed: int | None = None) -> None:
        self.faults = faults
        self.started = time.monotonic()
        self.random = random.Random(seed)
        self.injected: dict[str, int] = {}

    async def before_call(self, stage: str) -> None:
        fault = self.faults.get(stage)
        if fault is None:
            return
        if fault.latency_max_ms:
            delay = self.random.uniform(fault.latency_min_ms, fault.latency_max_ms)
            await asyncio.sleep(delay / 1000)
        if fault.down_for_s and time.monotonic() - self.started < fault.down_for_s:
            self._count(stage)
            raise InjectedFault(f"{stage} model is down (injected for {fault.down_for_s:.0f}s)")
        if fault.error_rate and self.random.random() < fault.error_rate:
            self._count(stage)
            raise InjectedFault(f"{stage} model failed (injected error rate {fault.error_rate})")

    def _count(self, stage: str) -> None:
        self.injected[stage] = self.injected.get(stage, 0) + 1
