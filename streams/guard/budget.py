"""Spend caps: per email and per day, shared by every worker and kept across restarts.

Each paid model call writes a cost event to ``budget.spend`` (keyed by UTC day) in the same
batch as the stage's output, so it is durable before the input offset is committed. Every
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
        return catalog.BUDGET_SPEND, self.day.encode(), json.dumps(event).encode()

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
