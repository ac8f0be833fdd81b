"""The records a runner has in hand, and how far each partition may be committed.

One task per record; records with the same key (one email) are chained so they run one
after another, in offset order. Per partition, the offsets taken in and whether each is
done: a commit goes up to the first record that is not, never past it, whatever order
the tasks finish in. A task that failed or was cancelled is never marked done, so its
record is read again by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

log = logging.getLogger("mailroom.stage")


class InFlight:
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
