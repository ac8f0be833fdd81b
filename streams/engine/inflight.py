"""The records a runner has in hand, their outputs, and how far each partition may commit.

A record's handler starts at once, in the caller's turn (an eager task, as Python 3.12's
``eager_task_factory`` does): one that finishes without waiting (a router, a local model
that needs no batch) costs no task at all, and one that waits goes on as a task of its
own from where it stopped. Records with the same key (one email) are chained so they run
one after another, in offset order. A finished record's outputs are held, not written: they
are released with its offset, in the commit that moves its partition past it, so no
output is ever visible without its input committed (exactly-once) or committed without
its outputs written (at-least-once). A commit goes up to a partition's first record that
is not done, never past it, whatever order the tasks finish in. A task that failed or
was cancelled is never done, so its record is read again by whoever owns the partition
next.

Outputs are released in the order their records finished (one email's records finish in
offset order, across topics too: the join's changelog entry before its tombstone), and
outputs ``emit``-ted by background work (the join's timeouts) in the same sequence.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from streams.engine.records import Output, TopicPartition

log = logging.getLogger("mailroom.stage")

Work = Callable[[], Coroutine[Any, Any, list[Output]]]


class InFlight:
    """The records a runner has in hand: one task each, chained per key; for every
    partition the offsets not yet released, with the outputs of those that are done."""

    def __init__(self, *, eager: bool = True) -> None:
        """``eager``: start each handler in the caller's turn. Only for handlers that look
        at no current task before they first wait (``asyncio.timeout``, anyio's cancel
        scopes: an LLM client's), since in that first step the current task is the
        caller's."""
        self.eager = eager
        self.tasks: set[asyncio.Task[list[Output]]] = set()
        self.partition: dict[asyncio.Task[list[Output]], TopicPartition] = {}
        self.tails: dict[object, asyncio.Task[list[Output]]] = {}
        # per partition, offset -> (finish sequence, outputs) once done, None before
        self.open: dict[TopicPartition, dict[int, tuple[int, list[Output]] | None]] = {}
        self.extras: list[tuple[int, list[Output]]] = []
        self._seq = itertools.count()
        self.committable = False
        self._changed: asyncio.Future[None] | None = None

    def start(self, tp: TopicPartition, offset: int, key: object, work: Work) -> None:
        before = self.tails.get(key)
        records = self.open.get(tp)
        if records is None:
            records = self.open[tp] = {}
        records[offset] = None
        task: asyncio.Task[list[Output]]
        if before is not None:

            async def in_turn() -> list[Output]:
                await asyncio.wait({before})  # the same email's earlier record first
                return await work()

            task = asyncio.create_task(in_turn())
        elif self.eager:
            coro = work()
            context = contextvars.copy_context()
            try:
                step = context.run(coro.send, None)
            except StopIteration as finished:  # done without waiting: no task
                records[offset] = (next(self._seq), finished.value)
                self.committable = True
                return
            except Exception as exc:
                log.error("stage task failed: %r; its offset is not committed", exc)
                return
            task = asyncio.get_running_loop().create_task(_go_on(coro, step), context=context)
        else:
            task = asyncio.create_task(work())
        self.tasks.add(task)
        self.partition[task] = tp
        self.tails[key] = task

        def done(t: asyncio.Task[list[Output]]) -> None:
            self.tasks.discard(t)
            self.partition.pop(t, None)
            if self.tails.get(key) is t:
                del self.tails[key]
            changed = self._changed
            if changed is not None and not changed.done():
                changed.set_result(None)
            if t.cancelled():
                return  # given up: not done, so not committed
            if t.exception() is not None:
                log.error("stage task failed: %r; its offset is not committed", t.exception())
                return
            offsets = self.open.get(tp)
            if offsets is not None and offset in offsets:
                offsets[offset] = (next(self._seq), t.result())
                self.committable = True

        task.add_done_callback(done)

    def changed(self) -> asyncio.Future[None]:
        """Done when the next task in hand finishes (or is given up)."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def emit(self, outputs: list[Output]) -> None:
        """Outputs of no record (background work), released with the next commit."""
        if outputs:
            self.extras.append((next(self._seq), outputs))
            self.committable = True

    def take_committable(self) -> tuple[dict[TopicPartition, int], list[Output]]:
        """Per partition, the offset after its leading run of done records, and the
        outputs to write with those offsets, in the order they were made; forgets them."""
        self.committable = False
        offsets: dict[TopicPartition, int] = {}
        released: list[tuple[int, list[Output]]] = []
        held = []  # finish sequence of done records still behind an unfinished one
        for tp, records in list(self.open.items()):
            while records:
                first = next(iter(records))
                result = records[first]
                if result is None:
                    break
                del records[first]
                released.append(result)
                offsets[tp] = first + 1
            held += [r[0] for r in records.values() if r is not None]
            if not records:
                del self.open[tp]
        # An emitted output waits for every record that finished before it.
        bound = min(held, default=None)
        keep = []
        for extra in self.extras:
            if bound is None or extra[0] < bound:
                released.append(extra)
            else:
                keep.append(extra)
        self.extras = keep
        released.sort(key=lambda r: r[0])
        return offsets, [o for _, outputs in released for o in outputs]

    def forget(self, parts: set[TopicPartition] | None = None) -> None:
        """Drop what is held for ``parts`` (all: and the emitted outputs): their records
        are processed again by whoever reads them next."""
        for tp in list(self.open) if parts is None else parts & set(self.open):
            del self.open[tp]
        if parts is None:
            self.extras.clear()

    async def wait_any(self, within_s: float) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=within_s, return_when="FIRST_COMPLETED")

    def of(self, parts: set[TopicPartition] | None) -> set[asyncio.Task[list[Output]]]:
        """The tasks in hand for ``parts`` (None: all)."""
        if parts is None:
            return set(self.tasks)
        return {t for t in self.tasks if self.partition.get(t) in parts}

    async def drain(
        self, within_s: float | None = None, parts: set[TopicPartition] | None = None
    ) -> bool:
        """Wait for the records in hand of ``parts`` (None: all), at most ``within_s``;
        whether they all finished."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        while waiting := self.of(parts):
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(waiting, timeout=left)
        return True

    async def cancel(self, parts: set[TopicPartition] | None = None) -> None:
        """Give up the records in hand of ``parts`` (None: all)."""
        doomed = self.of(parts)
        for task in doomed:
            task.cancel()
        if doomed:
            await asyncio.wait(doomed)


async def _go_on(coro: Coroutine[Any, Any, list[Output]], step: Any) -> list[Output]:
    """A coroutine that was started elsewhere and stopped at ``step``, carried on as a
    task (what the task of an eager start runs)."""
    return await _Resumed(coro, step)


class _Resumed:
    """Awaiting it hands the task the future ``coro`` waits on, then drives ``coro`` on
    (what ``yield from`` does; results and errors, cancellation included, go through)."""

    __slots__ = ("coro", "step")

    def __init__(self, coro: Coroutine[Any, Any, list[Output]], step: Any) -> None:
        self.coro = coro
        self.step = step

    def __await__(self) -> Generator[Any, Any, list[Output]]:
        coro, step = self.coro, self.step
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation, too, goes on into coro
                try:
                    step = coro.throw(exc)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
