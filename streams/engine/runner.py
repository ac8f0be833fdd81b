"""The stage loop on aiokafka: poll, hand each record to the wrapper, write, commit.

Why not Faust agents (the design card names them): Faust acks a message whose agent
raised, commits past a record it could not decode, and only turns on producer idempotence
inside transactions. This loop gives DESIGN §4-§6 directly:

- raw bytes in; the stage decodes them itself, so a record that cannot be decoded is
  dead-lettered with the reason instead of being skipped (``streams.engine.wrapper``);
- retry tiers are consumed by a second runner per stage that waits for each record's due
  time by pausing only that partition, so the main input keeps flowing;
- outputs go through one idempotent producer with acks=all, and a partition's offset is
  committed only after every output of the records before it is acknowledged by Kafka
  (``streams.engine.inflight``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
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

from streams.engine.inflight import InFlight
from streams.engine.kafka import stage_consumer
from streams.engine.records import Handler, Incoming, Output, Rebalance
from streams.engine.retry import from_retry
from streams.engine.wrapper import Wrapper
from streams.settings import Settings
from streams.telemetry import metrics
from streams.telemetry.sensor import StageSensor
from topics import headers as h
from topics.catalog import StageSpec

log = logging.getLogger("mailroom.stage")


class StageRunner:
    """Consume a stage's inputs (or its retry tiers), call its handler per message
    through the wrapper, write the outputs, commit."""

    def __init__(
        self,
        spec: StageSpec,
        handler: Handler,
        settings: Settings,
        producer: AIOKafkaProducer,
        *,
        retries: bool = False,
        limit: asyncio.Semaphore | None = None,
        consumer: AIOKafkaConsumer | None = None,
    ) -> None:
        """``consumer``: the group's consumer, for tests at the client boundary; by default
        one is made from the settings when the runner starts."""
        self.spec = spec
        self.settings = settings
        self.producer = producer
        self.retries = retries
        suffix = ".retry" if retries else ""
        self.group = f"{settings.app_id}.{spec.name}{suffix}"
        self.inputs = spec.retry_topics(settings.retry_tiers) if retries else spec.inputs
        self.process = Wrapper(
            spec,
            handler,
            settings.retry_delays_s,
            StageSensor(spec.name, self.group, settings.topic),
        )
        self.processed = 0
        self.stalled = False
        self.consumer: AIOKafkaConsumer | None = consumer
        # Shared by a stage's main and retry runners: the stage has this many in hand.
        self.limit = limit if limit is not None else stage_limit(settings)

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
        consumer = self.consumer or stage_consumer(
            self.settings,
            self.group,
            f"{self.settings.app_id}-{self.spec.name}{'-retry' if self.retries else ''}",
            max_poll_records=BATCH,
        )
        self.consumer = consumer
        flight = InFlight()
        # Held while records are taken in; a rebalance takes it, waits for every record in
        # hand and commits, so a partition changes hands with its offsets committed.
        busy = asyncio.Lock()

        async def settle() -> None:
            await flight.drain()
            await self._commit(consumer, flight)

        consumer.subscribe(topics, listener=Listener(busy, settle, on_assign, on_revoke))
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
        flight: InFlight,
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

    async def _commit(self, consumer: AIOKafkaConsumer, flight: InFlight) -> None:
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


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
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
