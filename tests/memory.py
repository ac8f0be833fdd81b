"""An in-memory Kafka at the client boundary: the consumer and producer surface the stage
runner uses (as httpx's MockTransport swaps a whole I/O boundary), so the real runner,
wrapper and in-flight tracker run without a broker. Broker tests keep proving the real
thing; these make the engine's rules fast to check."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition


@dataclass
class Sent:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class MemoryProducer:
    """Takes every record at once (acks=all, instantly), or fails the topics in ``refuse``."""

    sent: list[Sent] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if topic in self.refuse:
            future.set_exception(RuntimeError(f"{topic} refuses writes"))
        else:
            self.sent.append(Sent(topic, value, key, list(headers or [])))
            future.set_result(None)
        return future

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


class MemoryConsumer:
    """One member owning every partition of its topics; records are added with ``add``.

    Like aiokafka, ``getmany`` hands out one partition's records before the next."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.logs: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self.positions: dict[TopicPartition, int] = defaultdict(int)
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self.listener: Any = None
        self.stopped = False

    def add(
        self,
        topic: str,
        partition: int,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: int = 0,
    ) -> None:
        tp = TopicPartition(topic, partition)
        offset = len(self.logs[tp])
        self.logs[tp].append(
            ConsumerRecord(
                topic,
                partition,
                offset,
                timestamp,
                0,
                key,
                value,
                None,
                len(key or b""),
                len(value or b""),
                tuple(headers or ()),
            )
        )

    # -- the surface StageRunner uses ----------------------------------------------------
    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self._assigned = {TopicPartition(t, p) for t in topics for p in range(self.partitions)}
        self.listener = listener

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.on_partitions_assigned(set(self._assigned))

    async def stop(self) -> None:
        self.stopped = True

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.logs[tp])

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        self.committed.update(offsets)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        wanted = sorted(partitions or self._assigned - self._paused)
        budget = max_records if max_records is not None else 1 << 30
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in wanted:
            if budget <= 0:
                break
            records = self.logs[tp][self.positions[tp] : self.positions[tp] + budget]
            if records:
                batch[tp] = records
                self.positions[tp] += len(records)
                budget -= len(records)
        if not batch:
            await asyncio.sleep(min(timeout_ms, 10) / 1000)
        return batch
