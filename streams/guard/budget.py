"""Spend caps: per email and per day, shared by every worker and kept across restarts.

Each paid model call writes a cost event to ``budget.spend`` (keyed by UTC day) in the same
batch as the stage's output, so it is durable before the input offset is committed; the
events of one commit are folded into one per worker, stage, endpoint and model
(``fold_spend``: costs and tokens summed, ``calls`` counted), so a local model's nominal
cost does not double the records a stage writes. Every
worker reads that topic from the start of the day: today's spend is what all workers,
past and present, wrote. A call that would pass a cap is not made: the stage falls back to
a free model or escalates with ``budget_exceeded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition

from streams.engine.kafka import plain_consumer
from streams.errors import BudgetExceededError
from streams.settings import Settings
from topics import catalog

log = logging.getLogger("mailroom.budget")


def today(now: dt.datetime | None = None) -> str:
    """The UTC day, ``YYYY-MM-DD`` (asked twice per model call: formatted once a day)."""
    if now is not None:
        return now.strftime("%Y-%m-%d")
    return _day_name(int(time.time() // 86400))


@functools.lru_cache(maxsize=1)
def _day_name(day: int) -> str:
    return dt.datetime.fromtimestamp(day * 86400, dt.UTC).strftime("%Y-%m-%d")


@dataclass
class Budget:
    settings: Settings
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    spent_by_others: float = 0.0
    spent_here: float = 0.0
    day: str = field(default_factory=today)

    def cost_of(self, stage: str) -> float:
        return float(self.settings.model_costs.get(stage, 0.0))

    @property
    def spent_today(self) -> float:
        return self.spent_by_others + self.spent_here

    def check(self, stage: str, email_cost: float) -> float:
        """The cost of the call, or BudgetExceededError if it would pass a cap."""
        return self.allow(stage, self.cost_of(stage), email_cost)

    def allow(self, stage: str, cost: float, email_cost: float) -> float:
        """``cost`` (a call's price, or its worst case) if it stays under both caps, else
        BudgetExceededError."""
        if cost <= 0:
            return 0.0
        self._roll_day()
        if email_cost + cost > self.settings.budget_per_email:
            raise BudgetExceededError(
                f"{stage} would bring this email to {email_cost + cost:.4f}, over the "
                f"per-email cap {self.settings.budget_per_email:.4f}"
            )
        if self.spent_today + cost > self.settings.budget_per_day:
            raise BudgetExceededError(
                f"{stage} would bring today's spend to {self.spent_today + cost:.4f}, over the "
                f"daily cap {self.settings.budget_per_day:.4f}"
            )
        return cost

    def charge(
        self, stage: str, cost: float, message_id: str, **detail: str | int
    ) -> tuple[str, bytes, bytes]:
        """Count the spend here; the (topic, key, value) event to write with the output.
        ``detail``: what the cost is made of (endpoint, model, tokens in and out)."""
        self.spent_here += cost
        event = {
            "worker": self.worker_id,
            "stage": stage,
            "cost": cost,
            "message_id": message_id,
            "day": self.day,
            **detail,
        }
        return catalog.BUDGET_SPEND, self.day.encode(), orjson.dumps(event)

    def _roll_day(self) -> None:
        if today() != self.day:
            self.day, self.spent_by_others, self.spent_here = today(), 0.0, 0.0

    async def follow(self, stop: asyncio.Event) -> None:
        """Sum today's events written by other workers (or by earlier runs)."""
        topic = self.settings.topic(catalog.BUDGET_SPEND)
        consumer = plain_consumer(self.settings)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, 0)]  # keyed by day: one partition (catalog)
            consumer.assign(parts)
            midnight = dt.datetime.strptime(self.day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
            found = await consumer.offsets_for_times(
                {tp: int(midnight.timestamp() * 1000) for tp in parts}
            )
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                start = found[tp].offset if found.get(tp) else ends[tp]
                consumer.seek(tp, start)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        self.count_event(record.value)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def count_event(self, value: bytes | None) -> None:
        try:
            event = json.loads(value or b"{}")
        except json.JSONDecodeError:
            return
        if event.get("worker") != self.worker_id and event.get("day") == self.day:
            self.spent_by_others += float(event.get("cost", 0.0))


_SUMMED = ("cost", "calls", "input_tokens", "output_tokens")


def fold_spend(values: list[bytes]) -> list[bytes]:
    """Spend events as one per worker, day, stage, endpoint and model: costs, calls and
    tokens summed, and what each email spent under ``messages`` (message id -> cost; an
    event that stands alone keeps its ``message_id``)."""
    groups: dict[tuple[object, ...], dict[str, Any]] = {}
    for value in values:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        event.setdefault("calls", 1)
        group = tuple(event.get(k) for k in ("worker", "day", "stage", "endpoint", "model"))
        found = groups.get(group)
        if found is None:
            groups[group] = event
            continue
        if "message_id" in found:
            first = found.pop("message_id")
            found["messages"] = {first: found["cost"]}
        messages = found["messages"]
        mid = event.get("message_id")
        if mid is not None:
            messages[mid] = messages.get(mid, 0.0) + event["cost"]
        for name in _SUMMED:
            if name in event or name in found:
                found[name] = found.get(name, 0) + event.get(name, 0)
    return [orjson.dumps(event) for event in groups.values()]


def spent_by_message(events: list[dict[str, Any]]) -> dict[str, float]:
    """What each email spent, by the spend events (folded or not)."""
    spent: dict[str, float] = {}
    for event in events:
        for mid, cost in event.get(
            "messages", {event.get("message_id"): event.get("cost", 0.0)}
        ).items():
            if mid is not None:
                spent[mid] = spent.get(mid, 0.0) + float(cost)
    return spent
