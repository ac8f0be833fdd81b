"""A stage's connection to Kafka: records in; outputs and input offsets out together.

On confluent-kafka (librdkafka). Exactly-once (the default): a runner's outputs and the
offsets of the records they came from commit in one transaction that carries the
consumer's group metadata (KIP-447), so a worker that fell out of its group can neither
write nor commit; every consumer reads committed. At-least-once: outputs are sent with
acks=all and idempotence, and the offsets are committed once Kafka has acknowledged them.

Why librdkafka and not aiokafka, the runtime before: aiokafka 0.14's
``send_offsets_to_transaction`` sends TxnOffsetCommit v0 with a group id only, so the
coordinator cannot tell a member of the current generation from one the group has left
behind, and a zombie's transaction commits offsets its successor is processing again.
librdkafka sends ``consumer_group_metadata()`` (generation, member id), fetches committed
offsets with require_stable (a pending transaction's offsets are waited for, not read
stale), and heartbeats from its own thread, so a busy event loop does not drop a worker
from its group.

The consumer runs on a thread of its own (its rebalance callbacks run there and hand the
runner's work to the event loop); transactions run on a second thread.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import TopicPartition as Partition

from streams.engine.kafka import consumer_config
from streams.engine.records import Incoming, Link, Output, Rebalance, TopicPartition
from streams.engine.writer import Lost, Stalled, Undelivered, Writer, describe
from streams.settings import Settings
from streams.telemetry import metrics

log = logging.getLogger("mailroom.stage")


class KafkaLink:
    """One consumer in the stage's group and the producer that writes for it."""

    def __init__(self, settings: Settings, group: str, client_id: str, stage: str) -> None:
        self.settings = settings
        self.group = group
        self.stage = stage
        self.transactional = settings.exactly_once
        # classic: eager range rebalances (every partition revoked and dealt again);
        # consumer (KIP-848): the broker moves only the partitions that change owner
        self.eager = settings.group_protocol == "classic"
        self.consumer = Consumer(consumer_config(settings, group, client_id))
        instance = settings.instance_id or uuid.uuid4().hex[:12]
        self.writer = Writer(settings, stage, client_id, f"{group}.{instance}")
        self.reading = ThreadPoolExecutor(1, thread_name_prefix=f"consume-{stage}")
        self.writing = ThreadPoolExecutor(1, thread_name_prefix=f"produce-{stage}")
        self._assigned: set[TopicPartition] = set()
        # committed offsets of the assigned partitions, sent with every transaction so
        # even one of emitted outputs only is checked against the group's generation
        self._known: dict[TopicPartition, int] = {}
        # bumped by every rewind and rebalance: what a poll running meanwhile returns is
        # dropped (it may hold records fetched before the partitions were given back at
        # their committed offsets; the runner would commit past the ones in between)
        self._epoch = 0
        self._placed: dict[TopicPartition, int] = {}  # where the last assignment put each
        self._last: dict[TopicPartition, int] = {}  # offset of the last record read
        self._ops: list[Callable[[], None]] = []  # consumer calls made before the next poll
        self._metadata: Any = None  # the group's, taken in a rebalance callback
        self._in_callback = False
        self._stash: dict[TopicPartition, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stall = Stalled(stage)

    # -- reading ------------------------------------------------------------------------
    # confluent-kafka serialises a consumer's calls with ``consume``: every call is made on
    # the reading thread, between polls (``_ops``) or inside a rebalance callback, never
    # from the event loop or the writing thread, which would wait for the poll or, during
    # a callback that waits for the loop, forever.
    async def start(
        self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance
    ) -> None:
        self._loop = loop = asyncio.get_running_loop()

        def call(hook: Rebalance, parts: set[TopicPartition], consumer: Consumer) -> None:
            """Run the runner's hook on the loop, this thread waiting; what the hook
            commits meanwhile uses the group metadata taken here."""

            async def run() -> None:
                await hook(parts)

            if self.transactional:
                self._metadata = consumer.consumer_group_metadata()
            self._in_callback = True
            try:
                asyncio.run_coroutine_threadsafe(run(), loop).result()
            finally:
                self._in_callback = False
                if self._stash:  # at-least-once commits made during the hook
                    stash, self._stash = self._stash, {}
                    self._commit_offsets(stash)

        def assigned(consumer: Consumer, partitions: list[Partition]) -> None:
            try:
                # Offsets a pending transaction holds are waited for (require_stable), so
                # the stage's state is restored only once its inputs' offsets are final.
                found = consumer.committed(partitions, timeout=self.writer.timeout_s)
                parts = {TopicPartition(p.topic, p.partition) for p in found}
                log.info(
                    "stage %s (group %s) newly assigned %s",
                    self.stage,
                    self.group,
                    ", ".join(f"{t}[{p}]" for t, p in sorted(parts)),
                )
                if self.eager:
                    self._epoch += 1
                self._assigned |= parts
                for p in found:
                    tp = TopicPartition(p.topic, p.partition)
                    self._placed[tp] = p.offset
                    if p.offset >= 0:
                        self._known[tp] = p.offset
                call(on_assign, parts, consumer)
                if self.eager:
                    consumer.assign(found)
                else:
                    consumer.incremental_assign(found)
            except Exception:
                log.exception("stage %s: assigning %s failed", self.stage, partitions)
                raise

        def revoked(consumer: Consumer, partitions: list[Partition]) -> None:
            parts = {TopicPartition(p.topic, p.partition) for p in partitions}
            if self.eager:
                self._epoch += 1
            try:
                call(on_revoke, parts, consumer)
            except Exception:
                log.exception("stage %s: giving up %s failed", self.stage, sorted(parts))
            finally:
                self._forget(parts)

        def lost(consumer: Consumer, partitions: list[Partition]) -> None:
            parts = {TopicPartition(p.topic, p.partition) for p in partitions}
            log.warning("stage %s lost partitions %s to the group", self.stage, sorted(parts))
            if self.eager:
                self._epoch += 1
            try:
                call(on_lost, parts, consumer)
            finally:
                self._forget(parts)

        if self.transactional:
            await loop.run_in_executor(self.writing, self.writer.recover)
        await loop.run_in_executor(
            self.reading,
            lambda: self.consumer.subscribe(
                topics, on_assign=assigned, on_revoke=revoked, on_lost=lost
            ),
        )

    def _forget(self, parts: set[TopicPartition]) -> None:
        self._assigned -= parts
        for tp in parts:
            self._known.pop(tp, None)
            self._last.pop(tp, None)
            self._placed.pop(tp, None)

    def _run_ops(self) -> None:
        ops, self._ops = self._ops, []
        for op in ops:
            try:
                op()
            except KafkaException as exc:  # e.g. a partition no longer assigned
                log.info("stage %s: %s", self.stage, describe(exc))

    def _consume(self, max_records: int, timeout_s: float) -> list[Message]:
        """What is there, at once; if nothing is, the first record to come within
        ``timeout_s`` and what came with it. (``consume(n, timeout)`` waits until it has
        ``n`` records or the timeout has passed: a full poll interval per hop.)"""
        self._run_ops()
        messages: list[Message] = self.consumer.consume(max_records, 0)
        if messages or timeout_s <= 0:
            return messages
        first = self.consumer.poll(timeout_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]

    async def poll(self, max_records: int, timeout_s: float) -> list[Incoming]:
        assert self._loop is not None, "start() first"
        epoch = self._epoch
        messages = await self._loop.run_in_executor(
            self.reading, self._consume, max_records, timeout_s
        )
        if epoch != self._epoch:
            # A rebalance or rewind during the poll: these records may predate it. Read
            # every partition again from where the assignment put it (nothing of this poll
            # was handed out, so nothing was processed past there).
            placed = [
                Partition(tp.topic, tp.partition, offset)
                for tp, offset in self._placed.items()
                if tp in self._assigned
            ]
            if placed and self.eager:
                # assign, not seek: a partition just assigned may not take a seek yet
                self._ops.append(lambda: self.consumer.assign(placed))
            return []
        records = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self.writer.once.warn(f"stage {self.stage} cannot read: {describe(error)}")
                continue
            tp = TopicPartition(m.topic(), m.partition())
            offset = m.offset()
            self._last[tp] = offset
            records.append(
                Incoming(
                    tp.topic,
                    tp.partition,
                    offset,
                    m.key(),
                    m.value(),
                    list(m.headers() or ()),
                    m.timestamp()[1],
                )
            )
        return records

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, tp: TopicPartition) -> None:
        """Before the next poll."""
        self._ops.append(lambda: self.consumer.pause([Partition(tp.topic, tp.partition)]))

    def resume(self, tp: TopicPartition) -> None:
        """Before the next poll."""
        self._ops.append(lambda: self.consumer.resume([Partition(tp.topic, tp.partition)]))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Before the next poll."""
        self._ops.append(lambda: self.consumer.seek(Partition(tp.topic, tp.partition, offset)))

    async def rewind(self, parts: set[TopicPartition]) -> None:
        """Put ``parts`` back at their committed offsets; what a running poll returns is
        dropped."""
        assert self._loop is not None
        self._epoch += 1
        asked = [Partition(tp.topic, tp.partition) for tp in parts if tp in self._assigned]
        if not asked:
            return
        if self._in_callback:  # the reading thread waits for us: before its next poll
            self._ops.append(lambda: self._rewind(asked))
        else:
            await self._loop.run_in_executor(self.reading, self._rewind, asked)

    def _rewind(self, asked: list[Partition]) -> None:
        self._run_ops()
        found = self.consumer.committed(asked, timeout=self.writer.timeout_s)
        for p in found:
            tp = TopicPartition(p.topic, p.partition)
            self._last.pop(tp, None)
            self._placed[tp] = p.offset
        if self.eager:
            # Assigned again at the committed offsets (all of the assignment is rewound):
            # unlike a seek, this also takes a partition whose fetch has not started yet.
            self.consumer.assign(found)
            return
        for p in found:
            offset = p.offset if p.offset >= 0 else OFFSET_BEGINNING
            try:
                self.consumer.seek(Partition(p.topic, p.partition, offset))
            except KafkaException as exc:  # no longer assigned: its new owner reads it
                log.info("stage %s: no rewind of %s: %s", self.stage, p, describe(exc))

    def _prepare(self, offsets: dict[TopicPartition, int]) -> tuple[dict[TopicPartition, int], Any]:
        """On the reading thread, between polls: the group metadata, and each offset moved
        past the transaction markers behind the partition's last record when every record
        read from it is done (so a caught-up group shows no lag)."""
        metadata = self.consumer.consumer_group_metadata() if self.transactional else None
        done = [tp for tp, n in offsets.items() if self._last.get(tp) == n - 1]
        if done:
            for p in self.consumer.position([Partition(t, n) for t, n in done]):
                tp = TopicPartition(p.topic, p.partition)
                if p.offset > offsets[tp]:
                    offsets[tp] = p.offset
        self._lag(offsets)
        return offsets, metadata

    # -- writing ------------------------------------------------------------------------
    async def commit(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        """Write ``outputs`` and commit ``offsets``; exactly-once: in one transaction.

        Retried until it works (the stage stalls meanwhile, nothing is dropped), except
        when the group has moved on (``Lost``) or the runner is stopping."""
        assert self._loop is not None
        loop = self._loop
        in_callback = self._in_callback
        if in_callback:
            metadata = self._metadata
        else:
            offsets, metadata = await loop.run_in_executor(
                self.reading, self._prepare, dict(offsets)
            )
        delay = 0.2
        while True:
            try:
                if self.transactional:
                    # every assigned partition's offset, so that even a transaction of
                    # emitted outputs only is checked against the group's generation
                    known = {tp: n for tp, n in self._known.items() if tp in self._assigned}
                    await loop.run_in_executor(
                        self.writing, self.writer.transaction, outputs, known | offsets, metadata
                    )
                    self._known.update({tp: n for tp, n in offsets.items() if tp in self._assigned})
                else:
                    outputs = await loop.run_in_executor(self.writing, self.writer.deliver, outputs)
                    if outputs:
                        raise Undelivered(outputs)
                    if in_callback:
                        self._stash.update(offsets)  # committed by the callback's thread
                    else:
                        await loop.run_in_executor(self.reading, self._commit_offsets, offsets)
            except Lost:
                self._stall.recovered()
                raise
            except Exception as exc:
                self._stall.failed(f"write {len(outputs)} outputs", exc)
                if stop.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._stall.recovered()
            return

    def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(
                offsets=[Partition(tp.topic, tp.partition, n) for tp, n in offsets.items()],
                asynchronous=False,
            )
            self._known.update(offsets)
        except KafkaException as exc:
            # The group moved on; the new owner processes these again (at least once).
            log.warning("stage %s could not commit %s: %s", self.stage, offsets, describe(exc))

    def _lag(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    Partition(tp.topic, tp.partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                metrics.LAG.labels(self.group, tp.topic, str(tp.partition)).set(
                    max(0, high - offset)
                )

    async def close(self) -> None:
        """Leave the group at once (its partitions move now, not after a session
        timeout), then let the producer go."""
        assert self._loop is not None
        loop = self._loop
        try:
            await loop.run_in_executor(self.reading, self.consumer.close)
        finally:
            if not self.transactional:
                await loop.run_in_executor(self.writing, self.writer.producer.flush, 5.0)
            self.reading.shutdown(wait=False)
            self.writing.shutdown(wait=False)


__all__ = ["KafkaLink", "Link", "Lost"]
