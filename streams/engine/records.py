"""What flows through a stage: the record it reads, the records it writes, the handler.

``Incoming`` is a record as a handler sees it (raw bytes; a retried record carries the
topic, partition, offset and timestamp of its original input). ``Output`` is one record a
handler wants written, to a catalog topic name (the runtime adds the deployment's prefix
and the trace context). A ``Handler`` maps one to a list of the other; it may raise, and
the wrapper routes what it raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from topics import headers as h

Headers = list[tuple[str, bytes]]


class TopicPartition(NamedTuple):
    """One partition of a topic (full name, prefix included)."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Output:
    """One record a stage wants written: catalog topic name (no prefix), value, key."""

    topic: str
    value: bytes | None  # None: a tombstone (compacted changelogs)
    key: bytes
    headers: Headers = field(default_factory=list)

    def with_headers(self, headers: Headers) -> Output:
        return Output(self.topic, self.value, self.key, headers)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A record as a stage sees it. For a retried record, ``topic``/``partition``/
    ``offset``/``timestamp`` are those of the original input, not of the retry topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int

    @property
    def attempt(self) -> int:
        return int(h.get(self.headers, h.RETRY_ATTEMPT) or 0)


Handler = Callable[[Incoming], Awaitable[list[Output]]]
#: Called with the partitions a stage's group just got (or is about to give up).
Rebalance = Callable[[set[TopicPartition]], Awaitable[None]]


class Link(Protocol):
    """What a stage runner needs from Kafka (``KafkaLink``; an in-memory one in tests)."""

    async def start(
        self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance
    ) -> None: ...
    async def poll(self, max_records: int, timeout_s: float) -> list[Incoming]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, tp: TopicPartition) -> None: ...
    def resume(self, tp: TopicPartition) -> None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    async def commit(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None: ...
    async def rewind(self, parts: set[TopicPartition]) -> None: ...
    async def close(self) -> None: ...
