"""The per-message wrapper and the stage loop, on aiokafka.

Why not Faust agents (DESIGN §4 asks for them): Faust acks a message whose agent raised,
commits past a record it could not decode, and only turns on producer idempotence inside
transactions, whose exactly-once mode has open duplicate and crash bugs. Each of those
loses or duplicates email. This loop gives the guarantees DESIGN §4-§6 ask for directly:

- raw bytes in; the stage decodes them itself, so a record that cannot be decoded is
  dead-lettered with the reason instead of being skipped;
- every failure is caught per message and routed (dead-letter topic for now; retry tiers
  arrive with step 3);
- outputs go through one idempotent producer with acks=all, and a partition's offset is
  committed only after every output of the records before it is acknowledged by Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError

from streams.settings import Settings
from topics import headers as h
from topics.catalog import StageSpec
from topics.errors import MailroomError

log = logging.getLogger("mailroom.stage")

MAX_ERROR_MESSAGE = 500
MAX_STACKTRACE = 4000


@dataclass(frozen=True)
class Output:
    """One record a stage wants written: catalog topic name (no prefix), value, key."""

    topic: str
    value: bytes | None  # None: a tombstone (compacted changelogs)
    key: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


Handler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[list[Output]]]
Rebalance = Callable[[set[TopicPartition]], Awaitable[None]]


def durable_async_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.aiokafka_config(),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        client_id=f"{settings.app_id}-worker",
    )


def dead_letter(
    spec: StageSpec, record: ConsumerRecord[bytes, bytes], exc: BaseException
) -> Output:
    """The original key, value and headers, plus the DESIGN §5 metadata headers."""
    message = str(exc)[:MAX_ERROR_MESSAGE]
    stack = "".join(traceback.format_exception(exc))[-MAX_STACKTRACE:]
    error_class = exc.error_class if isinstance(exc, MailroomError) else type(exc).__name__
    original = [(k, v) for k, v in (record.headers or ())]
    now = str(int(time.time() * 1000))
    updates = {
        h.ORIGIN_TOPIC: record.topic,
        h.ORIGIN_PARTITION: str(record.partition),
        h.ORIGIN_OFFSET: str(record.offset),
        h.ORIGIN_TIMESTAMP: str(record.timestamp),
        h.ERROR_STAGE: spec.name,
        h.ERROR_CLASS: error_class,
        h.ERROR_MESSAGE: message,
        h.ERROR_STACKTRACE: stack,
        h.RETRY_ATTEMPT: h.get(original, h.RETRY_ATTEMPT) or "0",
        h.FIRST_FAILED_AT: h.get(original, h.FIRST_FAILED_AT) or now,
    }
    return Output(
        spec.dlq_topic, record.value or b"", record.key or b"", h.replace(original, updates)
    )


class StageRunner:
    """Consume a stage's inputs, call its handler per message, write outputs, commit."""

    def __init__(
        self,
        spec: StageSpec,
        handler: Handler,
        settings: Settings,
        producer: AIOKafkaProducer,
        *,
        group: str | None = None,
    ) -> None:
        self.spec = spec
        self.handler = handler
        self.settings = settings
        self.producer = producer
        self.group = group or f"{settings.app_id}.{spec.name}"
        self.processed = 0
        self.consumer: AIOKafkaConsumer | None = None

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        """The wrapper: every exception becomes a dead letter; nothing escapes."""
        try:
            return await self.handler(record)
        except Exception as exc:
            log.warning(
                "stage %s failed on %s[%d]@%d: %s: %s",
                self.spec.name,
                record.topic,
                record.partition,
                record.offset,
                type(exc).__name__,
                exc,
            )
            return [dead_letter(self.spec, record, exc)]

    async def send_all(self, outputs: list[Output]) -> None:
        """Send, then wait until Kafka acknowledged every record (acks=all)."""
        futures = [
            await self.producer.send(
                self.settings.topic(o.topic), o.value, key=o.key, headers=o.headers
            )
            for o in outputs
        ]
        if futures:
            await asyncio.gather(*futures)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        on_assign: Rebalance | None = None,
        on_revoke: Rebalance | None = None,
    ) -> None:
        topics = [self.settings.topic(t) for t in self.spec.inputs]
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_config(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.app_id}-{self.spec.name}",
            max_poll_records=200,
        )
        self.consumer = consumer
        # Held while a batch is processed and committed; a rebalance waits for it, so a
        # partition changes hands only between batches, with its offsets committed.
        busy = asyncio.Lock()
        consumer.subscribe(topics, listener=_Listener(busy, on_assign, on_revoke))
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=300)
                async with busy:
                    await self._handle_batches(consumer, batches)
        finally:
            await consumer.stop()

    async def _handle_batches(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        for tp, records in batches.items():
            if tp not in consumer.assignment():
                continue  # revoked meanwhile: its new owner reads from the committed offset
            outputs: list[Output] = []
            for record in records:
                outputs.extend(await self.process(record))
            await self.send_all(outputs)
            # Only now, with every output acknowledged, is the input done.
            try:
                await consumer.commit({tp: records[-1].offset + 1})
            except CommitFailedError as exc:
                # The group moved on; the new owner processes these again (at least once).
                log.warning("stage %s could not commit %s: %s", self.spec.name, tp, exc)
            self.processed += len(records)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Waits for the batch in hand before partitions are revoked; forwards the changes."""

    def __init__(
        self, busy: asyncio.Lock, on_assign: Rebalance | None, on_revoke: Rebalance | None
    ) -> None:
        self.busy = busy
        self.on_assign = on_assign
        self.on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.busy:
            pass
        if self.on_revoke is not None:
            await self.on_revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.on_assign is not None:
            await self.on_assign(assigned)


def now_ms() -> int:
    return int(time.time() * 1000)


def decision(
    stage: str, model: str, outcome: str, began: float, detail: str = ""
) -> dict[str, Any]:
    """One entry of a ticket's decision path."""
    return {
        "stage": stage,
        "model": model,
        "outcome": outcome,
        "latency_ms": round((time.perf_counter() - began) * 1000, 3),
        "detail": detail[:300],
        "at": now_ms(),
    }
