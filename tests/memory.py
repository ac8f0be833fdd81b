"""An in-memory Kafka at the client boundary: the link a stage runner reads and commits
through (as httpx's MockTransport swaps a whole I/O boundary), so the real runner,
wrapper and in-flight tracker run without a broker. Broker tests keep proving the real
thing; these make the engine's rules fast to check."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from streams.engine.link import Lost
from streams.engine.records import Incoming, Output, Rebalance, TopicPartition


@dataclass
class Sent:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]


class MemoryLink:
    """One member owning every partition of its topics; records are added with ``add``.
    A commit writes its outputs and moves the committed offsets together; ``refuse``
    makes commits fail (the stage stalls), ``lose_next`` makes the next one find the
    group moved on."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.logs: dict[TopicPartition, list[Incoming]] = defaultdict(list)
        self.positions: dict[TopicPartition, int] = defaultdict(int)
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[tuple[list[Output], dict[TopicPartition, int]]] = []
        self.sent: list[Sent] = []
        self.refuse = False
        self.lose_next = False
        self.rewound = 0
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self.closed = False
        self.waits: list[float] = []  # how long each poll was allowed to wait
        self._arrived = asyncio.Event()  # a record was added
        self.polling = 0  # polls under way
        self.polling_at_commit: list[int] = []  # polls under way at each commit
        self.polls_before_commit: list[int] = []  # len(waits) at each commit

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
            Incoming(topic, partition, offset, key, value, list(headers or ()), timestamp)
        )
        self._arrived.set()

    def to(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    # -- the surface StageRunner uses ----------------------------------------------------
    async def start(
        self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance
    ) -> None:
        self._assigned = {TopicPartition(t, p) for t in topics for p in range(self.partitions)}
        await on_assign(set(self._assigned))

    async def poll(self, max_records: int, timeout_s: float) -> list[Incoming]:
        self.polling += 1
        try:
            return await self._poll(max_records, timeout_s)
        finally:
            self.polling -= 1

    async def _poll(self, max_records: int, timeout_s: float) -> list[Incoming]:
        self.waits.append(timeout_s)
        batch: list[Incoming] = []
        for tp in sorted(self._assigned - self._paused):
            records = self.logs[tp][self.positions[tp] : self.positions[tp] + max_records]
            batch += records
            self.positions[tp] += len(records)
            max_records -= len(records)
            if max_records <= 0:
                break
        if not batch and timeout_s > 0 and max_records > 0:
            # as a consumer does: wait up to timeout_s for a record, then read it; a
            # rewind meanwhile makes it return nothing (as KafkaLink's epoch does)
            self._arrived.clear()
            rewound = self.rewound
            try:
                async with asyncio.timeout(timeout_s):
                    await self._arrived.wait()
            except TimeoutError:
                return []
            if self.rewound != rewound:
                return []
            return await self._poll(max_records, 0)
        return batch

    def pending(self) -> bool:
        return False

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, tp: TopicPartition) -> None:
        self._paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self._paused.discard(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def commit(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        if self.lose_next:
            self.lose_next = False
            raise Lost("ILLEGAL_GENERATION: the group moved on")
        while self.refuse:
            if stop.is_set():
                raise RuntimeError("the broker refuses writes")
            await asyncio.sleep(0.01)
        self.commits.append((list(outputs), dict(offsets)))
        self.polls_before_commit.append(len(self.waits))
        self.polling_at_commit.append(self.polling)
        self.sent += [Sent(o.topic, o.value, o.key, list(o.headers)) for o in outputs]
        self.committed.update(offsets)

    async def rewind(self, parts: set[TopicPartition]) -> None:
        self.rewound += 1
        self._arrived.set()  # a poll waiting returns (with nothing)
        for tp in parts:
            self.positions[tp] = self.committed.get(tp, 0)

    async def close(self) -> None:
        self.closed = True
