"""Micro-batching of local model calls: the calls of one model that arrive in the same
turn of the event loop go to the model as one batch (the data loader pattern).

A stage starts a task for every record of a poll at once, so their model calls arrive
together; a scikit-learn pipeline or an embedding model spends most of a one-row call on
checking its input and setting up, and a batch of 32 costs little more than one row.
Each call still gets its own answer, its own span and its own failure: an input the
model cannot take fails alone (the batch is tried again one by one), never its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

X = TypeVar("X")
Y = TypeVar("Y")

MAX_BATCH = 256  # inputs per model call, at most


class MicroBatch(Generic[X, Y]):
    """``await batch(x)``: ``many([x, ...])[i]``, with the other calls of this turn."""

    def __init__(self, many: Callable[[Sequence[X]], Sequence[Y]]) -> None:
        self.many = many
        self._pending: list[tuple[X, asyncio.Future[Y]]] = []

    def __call__(self, item: X) -> asyncio.Future[Y]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Y] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            self._run(pending[start : start + MAX_BATCH])

    def _run(self, chunk: list[tuple[X, asyncio.Future[Y]]]) -> None:
        live = [(x, f) for x, f in chunk if not f.cancelled()]
        if not live:
            return
        try:
            results = self.many([x for x, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"{len(results)} answers to {len(live)} inputs")
        except Exception as exc:
            if len(live) == 1:
                live[0][1].set_exception(exc)
                return
            for one in live:  # one bad input fails alone
                self._run([one])
            return
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)
