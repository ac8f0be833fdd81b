"""The per-message wrapper and the stage loop, on aiokafka.

Why not Faust agents (DESIGN §4 asks for them): Faust acks a message whose agent raised,
commits past a record it could not decode, and only turns on producer idempotence inside
transactions, whose exactly-once mode has open duplicate and crash bugs. Each of those
loses or duplicates email. This loop gives the guarantees DESIGN §4-§6 ask for directly:

- raw bytes in; the stage decodes them itself, so a record that cannot be decoded is
  dead-lettered with the reason instead of being skipped;
- every failure is caught per message and routed: a retriable one to the next retry tier
  (``streams.retry``), a permanent one or the last try's to the dead-letter topic;
- retry tiers are consumed by a second runner per stage that waits for each record's due
  time by pausing only that partition, so the main input keeps flowing;
- outputs go through one idempotent producer with acks=all, and a partition's offset is
  committed only after every output of the records before it is acknowledged by Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError
from opentelemetry.trace import SpanKind, Status, StatusCode

from streams import metrics
from streams.logs import redact
from streams.retry import Incoming, Output, from_retry, route_failure
from streams.settings import Settings
from streams.tracing import extract, inject, messaging_attributes, producer_span, tracer
from topics import headers as h
from topics.catalog import StageSpec

log = logging.getLogger("mailroom.stage")

__all__ = ["Handler", "Incoming", "Output", "StageRunner", "decision", "now_ms"]


Handler = Callable[[Incoming], Awaitable[list[Output]]]
Rebalance = Callable[[set[TopicPartition]], Awaitable[None]]


def durable_async_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.aiokafka_config(),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        client_id=f"{settings.app_id}-worker",
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
        retries: bool = False,
        limit: asyncio.Semaphore | None = None,
    ) -> None:
        self.spec = spec
        self.handler = handler
        self.settings = settings
        self.producer = producer
        self.retries = retries
        suffix = ".retry" if retries else ""
        self.group = f"{settings.app_id}.{spec.name}{suffix}"
        self.inputs = spec.retry_topics(len(settings.retry_delays_s)) if retries else spec.inputs
        self.processed = 0
        self.failed = 0
        self.stalled = False
        self.consumer: AIOKafkaConsumer | None = None
        # Shared by a stage's main and retry runners: the stage has this many in hand.
        self.limit = limit if limit is not None else stage_limit(settings)

    async def process(self, incoming: Incoming) -> list[Output]:
        """The wrapper: one CONSUMER span, parented to the record's trace context; every
        exception becomes a retry or a dead letter; nothing escapes."""
        message_id = h.get(incoming.headers, h.MESSAGE_ID) or (incoming.key or b"").decode(
            "utf-8", errors="replace"
        )
        attributes = {
            **messaging_attributes(
                operation="process",
                topic=incoming.topic,
                partition=incoming.partition,
                offset=incoming.offset,
                key=incoming.key,
                group=self.group,
            ),
            "mailroom.stage": self.spec.name,
            "mailroom.message_id": message_id,
            "mailroom.retry.attempt": incoming.attempt,
        }
        began = time.perf_counter()
        with tracer().start_as_current_span(
            f"process {incoming.topic}",
            context=extract(incoming.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            try:
                outputs = await self.handler(incoming)
                outcome = "ok"
            except Exception as exc:
                self.failed += 1
                message = redact(f"{type(exc).__name__}: {exc}")[:200]
                span.set_status(Status(StatusCode.ERROR, message))
                span.add_event(
                    "exception",
                    {"exception.type": type(exc).__name__, "exception.message": message},
                )
                failure = route_failure(self.spec, incoming, exc, self.settings.retry_delays_s)
                if failure.topic.endswith(".dlq"):
                    outcome = "dead_letter"
                    metrics.DEAD_LETTERS.labels(
                        self.spec.name, h.get(failure.headers, h.ERROR_CLASS)
                    ).inc()
                else:
                    outcome = "retry"
                    metrics.RETRIES.labels(
                        self.spec.name, h.get(failure.headers, h.RETRY_ATTEMPT)
                    ).inc()
                log.warning(
                    "stage %s failed on %s[%d]@%d (attempt %d) -> %s",
                    self.spec.name,
                    incoming.topic,
                    incoming.partition,
                    incoming.offset,
                    incoming.attempt,
                    failure.topic,
                    extra={
                        "event": "failure",
                        "stage": self.spec.name,
                        "message_id": message_id,
                        "outcome": outcome,
                        "decision": failure.topic,
                        "error_type": type(exc).__name__,
                        "error": message,
                        "traceback": redact("".join(traceback.format_exception(exc))),
                    },
                )
                outputs = [failure]
            decision = ",".join(o.topic for o in outputs)
            span.set_attribute("mailroom.outcome", outcome)
            span.set_attribute("mailroom.decision", decision)
            metrics.PROCESSED.labels(self.spec.name, outcome).inc()
            for o in outputs:
                metrics.ROUTED.labels(self.spec.name, o.topic).inc()
            log.info(
                "%s -> %s",
                self.spec.name,
                decision,
                extra={
                    "event": "route",
                    "stage": self.spec.name,
                    "message_id": message_id,
                    "outcome": outcome,
                    "decision": decision,
                    "latency_ms": round((time.perf_counter() - began) * 1000, 3),
                    "input_size": len(incoming.value or b""),
                },
            )
            return [self._traced(o) for o in outputs]

    def _traced(self, output: Output) -> Output:
        """A PRODUCER span for the output, its context injected into the output's headers."""
        if output.value is None:  # tombstones carry no trace
            return output
        with producer_span(
            self.settings.topic(output.topic), output.key, **{"mailroom.stage": self.spec.name}
        ):
            return replace(output, headers=inject(output.headers))

    async def send_durably(self, outputs: list[Output], stop: asyncio.Event) -> None:
        """Send until Kafka has every output. While it cannot (say the dead-letter topic
        refuses writes), the stage stalls and says so: the input offset stays uncommitted
        and nothing is dropped."""
        delay = 0.5
        while True:
            try:
                await self.send_all(outputs)
            except Exception as exc:
                if not self.stalled:
                    log.error(
                        "stage %s stalled: cannot write %d outputs (%s: %s); "
                        "input not committed, retrying",
                        self.spec.name,
                        len(outputs),
                        type(exc).__name__,
                        exc,
                    )
                self.stalled = True
                metrics.STALLED.labels(self.spec.name).set(1)
                if stop.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if self.stalled:
                log.warning("stage %s recovered: outputs written", self.spec.name)
                metrics.STALLED.labels(self.spec.name).set(0)
            self.stalled = False
            return

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
        topics = [self.settings.topic(t) for t in self.inputs]
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_config(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.app_id}-{self.spec.name}{'-retry' if self.retries else ''}",
            max_poll_records=BATCH,
        )
        self.consumer = consumer
        # Held while a batch is processed and committed; a rebalance waits for it, so a
        # partition changes hands only between batches, with its offsets committed.
        busy = asyncio.Lock()
        consumer.subscribe(topics, listener=_Listener(busy, on_assign, on_revoke))
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await fair_batch(consumer)
                async with busy:
                    await self._handle_batches(consumer, batches, stop)
        finally:
            await consumer.stop()

    async def _handle_batches(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        stop: asyncio.Event,
    ) -> None:
        """Handle one poll's records, up to ``stage_concurrency`` at once, oldest first.

        Records with the same key (one email) are handled one after another, in offset
        order; different keys overlap, which is what slow models need. Each message's
        outputs are sent as soon as it is handled; the offsets are committed once every
        output of the poll is acknowledged.
        """
        todo: list[ConsumerRecord[bytes, bytes]] = []
        last: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            if tp not in consumer.assignment():
                continue  # revoked meanwhile: its new owner reads from the committed offset
            for record in records:
                if self.retries and not self._due(consumer, tp, record):
                    break  # paused until due; the rest of the tier waits behind it
                todo.append(record)
                last[tp] = record.offset
        if not todo:
            return
        chains: dict[object, list[ConsumerRecord[bytes, bytes]]] = {}
        for record in todo:
            chains.setdefault(record.key if record.key is not None else id(record), []).append(
                record
            )
        # Oldest first across partitions; each key's records stay in offset order.
        chains = dict(sorted(chains.items(), key=lambda kv: kv[1][0].timestamp))
        sent: list[tuple[Output, asyncio.Future[Any] | None]] = []
        if len(chains) == 1 or self.limit is None:
            for chain in chains.values():
                await self._handle_chain(chain, sent)
        else:
            await asyncio.gather(*(self._handle_chain(c, sent) for c in chains.values()))
        unsent = []
        for output, future in sent:
            if future is None:
                unsent.append(output)
                continue
            try:
                await future
            except Exception:
                unsent.append(output)
        if unsent:
            await self.send_durably(unsent, stop)
        for tp, done in last.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.LAG.labels(self.group, tp.topic, str(tp.partition)).set(
                    max(0, highwater - done - 1)
                )
        # Only now, with every output acknowledged, are the inputs done.
        try:
            await consumer.commit({tp: done + 1 for tp, done in last.items()})
        except CommitFailedError as exc:
            # The group moved on; the new owner processes these again (at least once).
            log.warning("stage %s could not commit %s: %s", self.spec.name, sorted(last), exc)

    async def _handle_chain(
        self,
        chain: list[ConsumerRecord[bytes, bytes]],
        sent: list[tuple[Output, asyncio.Future[Any] | None]],
    ) -> None:
        """One key's records in order; each one's outputs handed to the producer at once."""
        for record in chain:
            if self.limit is None:
                outputs = await self.process(self._incoming(record))
            else:
                async with self.limit:
                    outputs = await self.process(self._incoming(record))
            self.processed += 1
            for o in outputs:
                try:
                    future = await self.producer.send(
                        self.settings.topic(o.topic), o.value, key=o.key, headers=o.headers
                    )
                except Exception:
                    future = None  # sent again, durably, before the commit
                sent.append((o, future))

    def _incoming(self, record: ConsumerRecord[bytes, bytes]) -> Incoming:
        headers = [(k, v) for k, v in (record.headers or ())]
        incoming = Incoming(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            headers,
            record.timestamp,
        )
        return from_retry(incoming) if self.retries else incoming

    def _due(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]
    ) -> bool:
        """True when a retry record is due; else pause its partition until it is.

        Non-blocking: only this tier's partition waits, every other input keeps flowing.
        """
        not_before = int(h.get(list(record.headers or ()), h.RETRY_NOT_BEFORE) or 0)
        wait_s = (not_before - time.time() * 1000) / 1000
        if wait_s <= 0:
            return True
        consumer.seek(tp, record.offset)
        consumer.pause(tp)
        asyncio.get_running_loop().call_later(wait_s, self._resume, consumer, tp)
        return False

    @staticmethod
    def _resume(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        if tp in consumer.assignment():
            consumer.resume(tp)


BATCH = 200  # records per poll, across all partitions


def stage_limit(settings: Settings) -> asyncio.Semaphore | None:
    """How many messages a stage has in hand at once; None: one at a time."""
    concurrency = settings.stage_concurrency
    return asyncio.Semaphore(concurrency) if concurrency > 1 else None


async def fair_batch(
    consumer: AIOKafkaConsumer, size: int = BATCH, timeout_ms: int = 300
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Up to ``size`` records with an even share from every partition that has some.

    aiokafka hands out a fetched partition's records until they run out before it moves
    to the next, so under a backlog one stage may work through partition 0 while the stage
    running beside it (classify and urgency both read ``emails.accepted``) is on partition
    3: the join between them then waits minutes for halves that are merely queued.
    Sharing each poll among the partitions keeps side-by-side stages near the same emails.
    """
    assigned = consumer.assignment()
    share = max(1, size // max(1, len(assigned)))
    batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
        timeout_ms=timeout_ms, max_records=share
    )
    if batches:
        for tp in assigned - set(batches) - consumer.paused():
            more = await consumer.getmany(tp, timeout_ms=0, max_records=share)
            batches.update(more)
    return batches


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


async def read_to_end(
    settings: Settings, topic: str, numbers: set[int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in partitions ``numbers`` of ``topic`` (catalog name), in order."""
    name = settings.topic(topic)
    parts = [TopicPartition(name, n) for n in sorted(numbers)]
    if not parts:
        return []
    consumer = AIOKafkaConsumer(**settings.aiokafka_config(), enable_auto_commit=False)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        todo = {tp for tp in parts if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for records in batch.values():
                found.extend(records)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return found
