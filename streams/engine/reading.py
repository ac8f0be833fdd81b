"""The reading half of a stage's link: one consumer in the stage's group, on a thread of
its own.

confluent-kafka serialises a consumer's calls with ``consume``: every call is made on the
reading thread, between polls (``_ops``) or inside a rebalance callback, never from the
event loop or the writing thread, which would wait for the poll or, during a callback that
waits for the loop, forever. Each poll also takes what a commit needs of the consumer (the
group's metadata, each partition's position), so a commit never waits for a poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as Partition

from streams.engine.kafka import consumer_config
from streams.engine.records import Incoming, TopicPartition
from streams.engine.writer import Once, describe
from streams.settings import Settings
from streams.telemetry import metrics

log = logging.getLogger("mailroom.stage")
LAG_EVERY_S = 1.0  # how often the lag gauges are set


def read_batch(consumer: Consumer, max_records: int, timeout_s: float) -> list[Message]:
    """What is there, at once; if nothing is, the first record to come within
    ``timeout_s`` and what came with it. (``consume(n, timeout)`` waits until it has
    ``n`` records or the timeout has passed: a full poll interval per hop.)"""
    if max_records <= 0:
        return []
    messages: list[Message] = consumer.consume(max_records, 0)
    if not messages and timeout_s > 0:
        first = consumer.poll(timeout_s)
        if first is not None:
            messages = [first]
            if max_records > 1:
                messages += consumer.consume(max_records - 1, 0)
    return messages


class Read(NamedTuple):
    """One poll: its records, and the consumer's state after it."""

    messages: list[Message]
    metadata: Any
    positions: dict[TopicPartition, int]


class Reading:
    """A stage's consumer, what it has been given and read, and the calls queued for it."""

    def __init__(self, settings: Settings, group: str, client_id: str, stage: str) -> None:
        self.settings = settings
        self.group = group
        self.stage = stage
        self.transactional = settings.exactly_once
        # classic: eager range rebalances (every partition revoked and dealt again);
        # consumer (KIP-848): the broker moves only the partitions that change owner
        self.eager = settings.group_protocol == "classic"
        self.consumer = Consumer(consumer_config(settings, group, client_id))
        self.reading = ThreadPoolExecutor(1, thread_name_prefix=f"consume-{stage}")
        self.once = Once()
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
        self._in_callback = False
        # what the last poll saw: the group's metadata, each partition's position
        self._read_metadata: Any = None
        self._positions: dict[TopicPartition, int] = {}
        self._lag_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def timeout_s(self) -> float:
        """How long one blocking client call may take."""
        return max(10.0, self.settings.transaction_timeout_ms / 1000 * 3)

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

    def _consume(self, max_records: int, timeout_s: float) -> Read:
        """The records of ``read_batch`` and, with them, what a commit needs of the
        consumer: the group's metadata and where each partition's reading stands, so a
        commit never waits for a poll."""
        self._run_ops()
        messages = read_batch(self.consumer, max_records, timeout_s)
        metadata = self.consumer.consumer_group_metadata() if self.transactional else None
        parts = [Partition(tp.topic, tp.partition) for tp in self._assigned]
        positions = (
            {TopicPartition(p.topic, p.partition): p.offset for p in self.consumer.position(parts)}
            if parts
            else {}
        )
        now = time.monotonic()
        if now - self._lag_at >= LAG_EVERY_S:
            self._lag_at = now
            self._lag(dict(self._known))
        return Read(messages, metadata, positions)

    async def poll(self, max_records: int, timeout_s: float) -> list[Incoming]:
        assert self._loop is not None, "start() first"
        epoch = self._epoch
        read = await self._loop.run_in_executor(self.reading, self._consume, max_records, timeout_s)
        self._read_metadata = read.metadata  # the newest, rebalances of this poll included
        if epoch != self._epoch:
            self._positions = {}
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
        self._positions = read.positions
        records = []
        last = self._last
        for m in read.messages:
            error = m.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self.once.warn(f"stage {self.stage} cannot read: {describe(error)}")
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            last[TopicPartition(topic, partition)] = offset
            records.append(
                Incoming(
                    topic,
                    partition,
                    offset,
                    m.key(),
                    m.value(),
                    m.headers() or [],
                    m.timestamp()[1],
                )
            )
        return records

    def pending(self) -> bool:
        """Whether consumer calls wait for the next poll."""
        return bool(self._ops)

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
        found = self.consumer.committed(asked, timeout=self.timeout_s)
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

    def _past_markers(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Each offset moved past the transaction markers behind its partition's last
        record read when every record read from it is done (so a caught-up group shows
        no lag): where the last poll left the partition, when that poll returned its
        last record (nothing but markers and aborted records lie in between)."""
        moved = dict(offsets)
        for tp, n in offsets.items():
            if self._last.get(tp) == n - 1:
                position = self._positions.get(tp, -1)
                if position > n:
                    moved[tp] = position
        return moved

    # -- writing ------------------------------------------------------------------------
    def _lag(self, committed: dict[TopicPartition, int]) -> None:
        for tp, offset in committed.items():
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
