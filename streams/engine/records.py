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


#: Folds the values of records written to one topic and key in one commit into fewer.
Fold = Callable[[list[bytes]], list[bytes]]


@dataclass(frozen=True, slots=True)
class Output:
    """One record a stage wants written: catalog topic name (no prefix), value, key.

    ``fold``: the records of one commit with the same topic, key and fold are written as
    ``fold(values)`` (bookkeeping, e.g. one spend event per stage and model per commit
    instead of one per model call), in the same transaction as the records they came with.
    """

    topic: str
    value: bytes | None  # None: a tombstone (compacted changelogs)
    key: bytes
    headers: Headers = field(default_factory=list)
    fold: Fold | None = field(default=None, compare=False)

    def with_headers(self, headers: Headers) -> Output:
        return Output(self.topic, self.value, self.key, headers, self.fold)


def folded(outputs: list[Output]) -> list[Output]:
    """``outputs`` with the foldable ones of each topic, key and fold folded, where the
    first of them was; the others in their order."""
    if not any(o.fold is not None for o in outputs):
        return outputs
    groups: dict[tuple[str, bytes, Fold], list[Output]] = {}
    order: list[Output | tuple[str, bytes, Fold]] = []
    for o in outputs:
        if o.fold is None or o.value is None:
            order.append(o)
            continue
        group = (o.topic, o.key, o.fold)
        if group not in groups:
            groups[group] = []
            order.append(group)
        groups[group].append(o)
    result: list[Output] = []
    for item in order:
        if isinstance(item, Output):
            result.append(item)
            continue
        members = groups[item]
        first = members[0]
        if len(members) == 1:
            result.append(first)
            continue
        values = item[2]([m.value for m in members if m.value is not None])
        result += [Output(first.topic, v, first.key, first.headers) for v in values]
    return result


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
        return h.get_int(self.headers, h.RETRY_ATTEMPT, 0)


Handler = Callable[[Incoming], Awaitable[list[Output]]]
#: Called with the partitions a stage's group just got (or is about to give up).
Rebalance = Callable[[set[TopicPartition]], Awaitable[None]]


class Link(Protocol):
    """What a stage runner needs from Kafka (``KafkaLink``; an in-memory one in tests)."""

    async def start(
        self, topics: list[str], on_assign: Rebalance, on_revoke: Rebalance, on_lost: Rebalance
    ) -> None: ...
    async def poll(self, max_records: int, timeout_s: float) -> list[Incoming]: ...
    def pending(self) -> bool: ...
    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, tp: TopicPartition) -> None: ...
    def resume(self, tp: TopicPartition) -> None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    async def commit(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None: ...
    async def rewind(self, parts: set[TopicPartition]) -> None: ...
    async def close(self) -> None: ...
