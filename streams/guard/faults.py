"""Fault injection for any stage's model, from one setting.

    MAILROOM_FAULTS="classify:error_rate=0.12,latency_ms=200..2000;generate:down_while=/tmp/down"

- ``error_rate``: the share of calls that fail (retriable);
- ``latency_ms``: added to every call, a number or a range ``200..2000`` (uniform);
- ``down_calls``: the first N calls fail, then the model works (a count, not a clock, so
  a slow machine sees the same faults as a fast one);
- ``down_while``: every call fails while the file at that path exists: a switch a test
  or an operator flips (``touch`` it: model down now; remove it: back now).

Failures raise ``InjectedFault`` (``Unavailable``, retriable).
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass

from streams.errors import FaultSpecError, InjectedFault
from streams.settings import MODEL_STAGES


@dataclass(frozen=True)
class Fault:
    error_rate: float = 0.0
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    down_calls: int = 0
    down_while: str = ""


OPTIONS = "error_rate, latency_ms, down_calls, down_while"


#: the longest latency injected: an hour (a mistyped unit, not an infinite sleep)
MAX_LATENCY_MS = 3_600_000.0


def parse_faults(spec: str) -> dict[str, Fault]:
    """``stage:key=value,key=value;stage:...`` -> {stage: Fault}. Raises FaultSpecError
    (a ValueError) naming the stage and the option that cannot be used."""
    faults: dict[str, Fault] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        stage, _, options = part.partition(":")
        stage = stage.strip()
        if stage not in MODEL_STAGES:
            raise FaultSpecError(
                f"no model stage {stage!r} to inject faults into; stages: {', '.join(MODEL_STAGES)}"
            )
        if stage in faults:
            raise FaultSpecError(f"{stage!r} is given twice; give each stage's faults once")
        values: dict[str, float | int | str] = {}
        for option in filter(None, (o.strip() for o in options.split(","))):
            key, _, raw = option.partition("=")
            values.update(_option(stage, key.strip(), raw.strip()))
        faults[stage] = Fault(**values)  # type: ignore[arg-type]
    return faults


def _option(stage: str, key: str, raw: str) -> dict[str, float | int | str]:
    if key not in ("latency_ms", "error_rate", "down_calls", "down_while"):
        raise FaultSpecError(f"unknown fault option {key!r} for {stage!r}; use {OPTIONS}")
    if key == "down_while":
        if not raw:
            raise FaultSpecError(f"down_while of {stage!r} needs a file path")
        return {key: raw}
    try:
        if key == "latency_ms":
            low, _, high = raw.partition("..")
            low_ms, high_ms = float(low), float(high or low)
            if not 0 <= low_ms <= high_ms <= MAX_LATENCY_MS:
                raise ValueError
            return {"latency_min_ms": low_ms, "latency_max_ms": high_ms}
        if key == "error_rate":
            rate = float(raw)
            if not 0.0 <= rate <= 1.0:  # NaN too
                raise ValueError
            return {key: rate}
        calls = int(raw)
        if calls < 0:
            raise ValueError
        return {key: calls}
    except ValueError:
        wanted = {
            "latency_ms": f"milliseconds, or a range low..high, up to {MAX_LATENCY_MS:.0f}",
            "error_rate": "a share between 0 and 1",
            "down_calls": "a count of calls, 0 or more",
        }[key]
        raise FaultSpecError(f"bad value {raw[:40]!r} for {key} of {stage!r}: {wanted}") from None


class FaultInjector:
    def __init__(self, faults: dict[str, Fault], *, seed: int | None = None) -> None:
        self.faults = faults
        self.random = random.Random(seed)
        self.calls: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    async def before_call(self, stage: str) -> None:
        fault = self.faults.get(stage)
        if fault is None:
            return
        calls = self.calls[stage] = self.calls.get(stage, 0) + 1
        if fault.latency_max_ms:
            delay = self.random.uniform(fault.latency_min_ms, fault.latency_max_ms)
            await asyncio.sleep(delay / 1000)
        if calls <= fault.down_calls:
            self._count(stage)
            raise InjectedFault(
                f"{stage} model is down (injected: call {calls} of the first {fault.down_calls})"
            )
        if fault.down_while and switched_on(fault.down_while):
            self._count(stage)
            raise InjectedFault(f"{stage} model is down (injected while {fault.down_while} exists)")
        if fault.error_rate and self.random.random() < fault.error_rate:
            self._count(stage)
            raise InjectedFault(f"{stage} model failed (injected error rate {fault.error_rate})")

    def _count(self, stage: str) -> None:
        self.injected[stage] = self.injected.get(stage, 0) + 1


def switched_on(path: str) -> bool:
    """The switch file exists (one stat; local files only)."""
    return os.path.exists(path)
