"""The per-message wrapper and the stage loop, on aiokafka.

Why not Faust agents (DESIGN §4 asks for them): Faust acks a message whose agent raised,
commits past a record it could not decode, and only turns on producer idempotence inside
transactions, whose exactly-once mode has open duplicate and crash bugs. Each of those
loses or duplicates email. This loop gives the guarantees DESIGN §4-§6 ask for directly:

- raw bytes in; the stage decodes them itself, so a record that cannot be decoded is
  dead-lettered with the reason instead of being skipped;
- every failure is caught per message and routed: a retriable one to the next retry tier
  (``streams.engine.retry``), a permanent one or the last try's to the dead-letter topic;
- retry tiers are consumed by a second runner per stage that waits for each record's due
  time by pausing only that partition, so the main input keeps flowing;
- outputs go through one idempotent producer with acks=all, and a partition's offset is
  committed only after every output of the records before it is acknowledged by Kafka.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
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

from streams.engine.retry import Incoming, Output, from_retry, route_failure
from streams.settings import Settings
from streams.telemetry import metrics
from streams.telemetry.logs import redact
from streams.telemetry.tracing import extract, inject, messaging_attributes, producer_span, tracer
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
        and nothing is dropped. Only the outputs Kafka has not acknowledged are sent again."""
        delay = 0.5
        while failed := await self.send_all(outputs):
            outputs = [o for o, _ in failed]
            exc = failed[0][1]
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
                raise exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        if self.stalled:
            log.warning("stage %s recovered: outputs written", self.spec.name)
            metrics.STALLED.labels(self.spec.name).set(0)
        self.stalled = False

    async def send_all(self, outputs: list[Output]) -> list[tuple[Output, Exception]]:
        """Send every output, then wait until Kafka acknowledged each (acks=all); the ones
        it did not, with the reason."""
        sent: list[tuple[Output, asyncio.Future[Any] | Exception]] = []
        for o in outputs:
            try:
                future = await self.producer.send(
                    self.settings.topic(o.topic), o.value, key=o.key, headers=o.headers
                )
            except Exception as exc:
                sent.append((o, exc))
            else:
                sent.append((o, future))
        failed: list[tuple[Output, Exception]] = []
        for o, maybe in sent:
            if isinstance(maybe, Exception):
                failed.append((o, maybe))
                continue
            try:
                await maybe
            except Exception as exc:
                failed.append((o, exc))
        return failed

    async def run(
        self,
        stop: asyncio.Event,
        *,
        on_assign: Rebalance | None = None,
        on_revoke: Rebalance | None = None,
    ) -> None:
        """Poll while there is room, handle each record in a task of its own, commit each
        partition up to its first record not yet done.

        No batch waits for its slowest record: as one finishes, the next is taken in, so
        a 2 s model call holds one slot, not the stage. Records with the same key (one
        email) run one after another, in offset order; ``stage_concurrency`` bounds the
        handlers running at once (first tries and retries of the stage together).
        """
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
        flight = _Flight()
        # Held while records are taken in; a rebalance takes it, waits for every record in
        # hand and commits, so a partition changes hands with its offsets committed.
        busy = asyncio.Lock()

        async def settle() -> None:
            await flight.drain()
            await self._commit(consumer, flight)

        consumer.subscribe(topics, listener=_Listener(busy, settle, on_assign, on_revoke))
        await consumer.start()
        room = max(2 * self.settings.stage_concurrency, 1)
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                if len(flight.tasks) >= room:
                    await flight.wait_any(within_s=0.3)
                else:
                    batches = await fair_batch(
                        consumer, size=min(BATCH, room - len(flight.tasks)), timeout_ms=100
                    )
                    async with busy:
                        self._take(consumer, batches, flight, stop)
                if flight.committable and time.monotonic() - last_commit >= COMMIT_EVERY_S:
                    await self._commit(consumer, flight)
                    last_commit = time.monotonic()
            await flight.drain()
            await self._commit(consumer, flight)
        finally:
            await flight.cancel()
            await consumer.stop()

    def _take(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        flight: _Flight,
        stop: asyncio.Event,
    ) -> None:
        """Start a task for each record of the poll, oldest first across partitions."""
        todo: list[list[ConsumerRecord[bytes, bytes]]] = []
        for tp, records in batches.items():
            if tp not in consumer.assignment():
                continue  # revoked meanwhile: its new owner reads from the committed offset
            taken = []
            for record in records:
                if self.retries and not self._due(consumer, tp, record):
                    break  # paused until due; the rest of the tier waits behind it
                taken.append(record)
            todo.append(taken)
        # Oldest first across partitions; merge never reorders one partition's records.
        for record in heapq.merge(*todo, key=lambda r: r.timestamp):
            tp = TopicPartition(record.topic, record.partition)
            key: object = record.key if record.key is not None else (tp, record.offset)
            flight.start(tp, record.offset, key, partial(self._one, record, stop))

    async def _one(self, record: ConsumerRecord[bytes, bytes], stop: asyncio.Event) -> None:
        """Handle one record and see every output acknowledged by Kafka."""
        if self.limit is None:
            outputs = await self.process(self._incoming(record))
        else:
            async with self.limit:
                outputs = await self.process(self._incoming(record))
        self.processed += 1
        if failed := await self.send_all(outputs):  # sent again, durably
            await self.send_durably([o for o, _ in failed], stop)

    async def _commit(self, consumer: AIOKafkaConsumer, flight: _Flight) -> None:
        """Commit every assigned partition up to its first record not yet done."""
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in flight.take_committable().items() if tp in assigned}
        if not offsets:
            return
        for tp, offset in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.LAG.labels(self.group, tp.topic, str(tp.partition)).set(
                    max(0, highwater - offset)
                )
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved on; the new owner processes these again (at least once).
            log.warning("stage %s could not commit %s: %s", self.spec.name, sorted(offsets), exc)

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
COMMIT_EVERY_S = 0.2  # at most this often; and always before a rebalance or a stop


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


class _Flight:
    """The records a runner has in hand: one task each, chained per key, and for every
    partition the offsets not yet done, so commits never pass an unfinished record."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.tails: dict[object, asyncio.Task[None]] = {}
        self.open: dict[TopicPartition, dict[int, bool]] = {}  # offset -> done, in order
        self.committable = False

    def start(
        self, tp: TopicPartition, offset: int, key: object, work: Callable[[], Awaitable[None]]
    ) -> None:
        before = self.tails.get(key)
        self.open.setdefault(tp, {})[offset] = False

        async def in_turn() -> None:
            if before is not None:
                await asyncio.wait({before})  # the same email's earlier record first
            await work()

        task = asyncio.create_task(in_turn())
        self.tasks.add(task)
        self.tails[key] = task

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            if self.tails.get(key) is t:
                del self.tails[key]
            if t.cancelled():
                return  # stopping: not done, so not committed
            if t.exception() is not None:
                log.error("stage task failed: %r; its offset is not committed", t.exception())
                return
            offsets = self.open.get(tp)
            if offsets is not None and offset in offsets:
                offsets[offset] = True
                self.committable = True

        task.add_done_callback(done)

    def take_committable(self) -> dict[TopicPartition, int]:
        """Per partition, the offset after its leading run of done records; forgets them."""
        self.committable = False
        out: dict[TopicPartition, int] = {}
        for tp, offsets in list(self.open.items()):
            while offsets:
                first = next(iter(offsets))
                if not offsets[first]:
                    break
                del offsets[first]
                out[tp] = first + 1
            if not offsets:
                del self.open[tp]
        return out

    async def wait_any(self, within_s: float) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=within_s, return_when="FIRST_COMPLETED")

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions are revoked: every record in hand finished and committed. While
    the stage's own callbacks run (the join reloading its waiting halves), no record is
    taken in: aiokafka sets the new assignment and starts fetching before it calls
    ``on_partitions_assigned``, so a half could otherwise arrive before its twin is
    restored, wait alone, and be escalated as ``join_timeout``."""

    def __init__(
        self,
        busy: asyncio.Lock,
        settle: Callable[[], Awaitable[None]],
        on_assign: Rebalance | None,
        on_revoke: Rebalance | None,
    ) -> None:
        self.busy = busy
        self.settle = settle
        self.on_assign = on_assign
        self.on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.busy:
            await self.settle()
            if self.on_revoke is not None:
                await self.on_revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.on_assign is not None:
            async with self.busy:
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
