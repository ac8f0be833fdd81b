"""The stage loop: poll, hand each record to the wrapper, commit outputs with offsets.

Why not Faust agents (the design card names them): Faust acks a message whose agent
raised, commits past a record it could not decode, and only turns on producer idempotence
inside transactions. This loop gives DESIGN §4-§6 directly:

- raw bytes in; the stage decodes them itself, so a record that cannot be decoded is
  dead-lettered with the reason instead of being skipped (``streams.engine.wrapper``);
- retry tiers are consumed by a second runner per stage that waits for each record's due
  time by pausing only that partition, so the main input keeps flowing;
- a record's outputs are held until its offset can be committed and go out with it, in
  one transaction carrying the group's metadata (exactly-once, ``streams.engine.link``),
  or acknowledged by Kafka before the offset is committed (at-least-once);
- before partitions change hands, what is in hand is finished (or, past a short grace,
  given up) and committed; after a failed transaction the stage is put back where its
  committed offsets and state say, and reads again from there.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from streams.engine.inflight import InFlight
from streams.engine.link import KafkaLink, Link, Lost
from streams.engine.records import Handler, Incoming, Output, Rebalance, TopicPartition
from streams.engine.retry import from_retry
from streams.engine.wrapper import Wrapper
from streams.settings import Settings
from streams.telemetry.sensor import StageSensor
from topics import catalog
from topics import headers as h
from topics.catalog import StageSpec

log = logging.getLogger("mailroom.stage")


class StageRunner:
    """Consume a stage's inputs (or its retry tiers), call its handler per message
    through the wrapper, commit the outputs with the input offsets."""

    def __init__(
        self,
        spec: StageSpec,
        handler: Handler,
        settings: Settings,
        *,
        retries: bool = False,
        limit: asyncio.Semaphore | None = None,
        link: Link | None = None,
    ) -> None:
        """``link``: the connection to Kafka, for tests at the client boundary; by default
        one is made from the settings when the runner starts."""
        self.spec = spec
        self.settings = settings
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
        self.rewinds = 0
        self.link = link
        # Eager starts, except where an LLM client may run in the handler's first step.
        self.flight = InFlight(eager=not settings.paid(spec.name))
        self._committing = asyncio.Lock()  # one commit at a time
        # While a rebalance hook or a rewind runs, the loop takes nothing in and starts no
        # poll and no commit.
        self._held = 0
        # read, not yet taken in: taken an even share per partition at a time
        self.ready: dict[TopicPartition, deque[Incoming]] = {}
        # Shared by a stage's main and retry runners: the stage has this many in hand.
        self.limit = limit if limit is not None else stage_limit(settings)

    def emit(self, outputs: list[Output]) -> None:
        """Write outputs of no input record (background work, e.g. the join's timeouts)
        with the next commit."""
        self.flight.emit(outputs)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        on_assign: Rebalance | None = None,
        on_revoke: Rebalance | None = None,
    ) -> None:
        """Read, handle and commit side by side: a poll waits for records on the link's
        reading thread, a commit (a transaction) runs on its writing thread, and the
        loop starts each record read as soon as there is room, so neither a waiting
        poll nor a commit holds the others up.

        No batch waits for its slowest record: as one finishes, the next is taken in, so
        a 2 s model call holds one slot, not the stage. Records with the same key (one
        email) run one after another, in offset order; ``stage_concurrency`` bounds the
        handlers running at once (first tries and retries of the stage together). One
        commit at a time: what finishes while one runs goes out with the next, which
        starts once it is done and a commit interval has passed since the last began.
        """
        topics = [self.settings.topic(t) for t in self.inputs]
        suffix = "-retry" if self.retries else ""
        link = self.link or KafkaLink(
            self.settings,
            self.group,
            f"{self.settings.app_id}-{self.spec.name}{suffix}",
            self.spec.name,
            (
                *self.spec.outputs,
                *self.spec.retry_topics(self.settings.retry_tiers),
                self.spec.dlq_topic,
                catalog.BUDGET_SPEND,
            ),
        )
        self.link = link
        flight = self.flight

        async def assigned(parts: set[TopicPartition]) -> None:
            with self._holding():
                if on_assign is not None:
                    await on_assign(parts)

        async def revoked(parts: set[TopicPartition]) -> None:
            with self._holding():
                await revoking(parts)

        async def revoking(parts: set[TopicPartition]) -> None:
            # Finish what is in hand for them (a short grace; past it, given up: their new
            # owner processes it again) and commit it while the partitions are still ours.
            self._drop_ready(parts)
            if not await flight.drain(within_s=REVOKE_GRACE_S, parts=parts):
                await flight.cancel(parts)
            try:
                await self._commit(link, stop)
            except Lost as exc:
                log.warning("stage %s: the group moved on before a commit: %s", self.spec.name, exc)
            flight.forget(parts)
            if on_revoke is not None:
                await on_revoke(parts)

        async def rewind(gone: set[TopicPartition] | None = None) -> None:
            """Nothing in hand; state and positions as committed (``gone``: partitions
            already lost to the group, given up without a commit)."""
            # Not while a commit is on its way, and the loop takes nothing in meanwhile.
            with self._holding():
                async with self._committing:
                    await rewinding(gone)

        async def rewinding(gone: set[TopicPartition] | None) -> None:
            self.rewinds += 1
            self._drop_ready(None)
            await flight.cancel()
            flight.forget()
            parts = link.assignment() - (gone or set())
            if on_revoke is not None:
                await on_revoke(parts | (gone or set()))
            await link.rewind(parts)
            # What a poll that ended before the link was put back brought: read again.
            # (A poll under way meanwhile returns nothing: the link drops what it read.)
            self._drop_ready(None)
            if on_assign is not None and parts:
                await on_assign(parts)

        async def lost(parts: set[TopicPartition]) -> None:
            # Lost without a revoke (the session ran out): whatever is in hand may have
            # been read past records of the lost partitions' new owner; start over from
            # the committed offsets of what is still ours.
            await rewind(gone=parts)

        async def commit_in_background() -> None:
            rewinds = self.rewinds
            try:
                await self._commit(link, stop)
            except Lost as exc:
                if self.rewinds == rewinds:  # not put back meanwhile (a lost session)
                    log.warning(
                        "stage %s: %s; reading again from the committed offsets",
                        self.spec.name,
                        exc,
                    )
                    await rewind()

        await link.start(topics, assigned, revoked, lost)
        room = max(2 * self.settings.stage_concurrency, 1)
        every_s = self.settings.commit_interval_ms / 1000
        last_commit = float("-inf")
        reading: asyncio.Task[list[Incoming]] | None = None
        committing: asyncio.Task[None] | None = None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if reading is not None and reading.done():
                    records, reading = reading.result(), None
                    for record in records:
                        tp = TopicPartition(record.topic, record.partition)
                        queue = self.ready.get(tp)
                        if queue is None:
                            queue = self.ready[tp] = deque()
                        queue.append(record)
                if committing is not None and committing.done():
                    finished, committing = committing, None
                    finished.result()  # Lost was handled; anything else ends the stage
                if len(flight.tasks) < room and self.ready and not self._held:
                    self._take(link, room - len(flight.tasks), flight)
                if committing is None and flight.committable and not self._held:
                    now = time.monotonic()
                    if now - last_commit >= every_s:
                        committing = asyncio.create_task(commit_in_background())
                        last_commit = now
                if reading is None and not self._held:
                    waiting = sum(map(len, self.ready.values()))
                    wanted = BATCH - waiting if len(flight.tasks) < room else 0
                    if wanted > 0 or link.pending():
                        reading = asyncio.create_task(link.poll(max(wanted, 0), POLL_S))
                wake: list[asyncio.Future[Any]] = [stopping]
                if reading is not None:
                    wake.append(reading)
                if committing is not None:
                    wake.append(committing)
                if flight.tasks:
                    wake.append(flight.changed())
                timeout = None
                if committing is None and flight.committable:
                    timeout = max(0.0, every_s - (time.monotonic() - last_commit))
                elif reading is None and committing is None and not flight.tasks:
                    timeout = POLL_S  # nothing under way (records wait to be due)
                await asyncio.wait(wake, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if reading is not None:  # what it reads is read again by the next owner
                reading.cancel()
            if committing is not None:
                await asyncio.wait({committing})
                if not committing.cancelled():
                    committing.exception()  # seen; the last commit says what is left
            await flight.drain()
            try:
                await self._commit(link, stop)
            except Lost as exc:
                log.warning("stage %s: last commit refused: %s", self.spec.name, exc)
        finally:
            stopping.cancel()
            for pending in (reading, committing):
                if pending is not None and not pending.done():
                    pending.cancel()
            await flight.cancel()
            await link.close()

    @contextmanager
    def _holding(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def _take(self, link: Link, room: int, flight: InFlight) -> None:
        """Start a task for up to ``room`` records read, an even share from every
        partition that has some, oldest first across partitions.

        librdkafka hands out a fetched partition's records before the next partition's,
        so under a backlog one stage could work through partition 0 while the stage
        beside it (classify and urgency both read ``emails.accepted``) is on partition 3,
        and the join would wait minutes for halves that are merely queued."""
        assigned = link.assignment()
        for tp in [tp for tp in self.ready if tp not in assigned]:
            del self.ready[tp]  # revoked meanwhile: its new owner reads them
        if not self.ready or room <= 0:
            return
        share = max(1, room // len(self.ready))
        todo: list[list[Incoming]] = []
        for tp, queue in list(self.ready.items()):
            taken: list[Incoming] = []
            while queue and len(taken) < share:
                record = queue[0]
                if self.retries and not self._due(link, tp, record):
                    queue.clear()  # paused and put back here: read again when due
                    break
                taken.append(queue.popleft())
            if not queue:
                del self.ready[tp]
            todo.append(taken)
        # Oldest first across partitions; merge never reorders one partition's records.
        for record in heapq.merge(*todo, key=lambda r: r.timestamp):
            tp = TopicPartition(record.topic, record.partition)
            key: object = record.key if record.key is not None else (tp, record.offset)
            flight.start(tp, record.offset, key, partial(self._one, record))

    def _drop_ready(self, parts: set[TopicPartition] | None) -> None:
        """Forget records read and not taken in (``None``: all); they are read again
        from the committed offsets, by this worker or the partitions' new owner."""
        for tp in list(self.ready) if parts is None else parts & set(self.ready):
            del self.ready[tp]

    async def _one(self, record: Incoming) -> list[Output]:
        """Handle one record; its outputs (held until its offset is committed)."""
        incoming = from_retry(record) if self.retries else record
        if self.limit is None:
            outputs = await self.process(incoming)
        else:
            async with self.limit:
                outputs = await self.process(incoming)
        self.processed += 1
        return outputs

    async def _commit(self, link: Link, stop: asyncio.Event) -> None:
        """Commit every assigned partition up to its first record not yet done, with the
        outputs of the records up to there; after any commit on its way."""
        async with self._committing:
            offsets, outputs = self.flight.take_committable()
            assigned = link.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
            if offsets or outputs:
                await link.commit(outputs, offsets, stop)

    def _due(self, link: Link, tp: TopicPartition, record: Incoming) -> bool:
        """True when a retry record is due; else pause its partition until it is.

        Non-blocking: only this tier's partition waits, every other input keeps flowing.
        """
        not_before = h.get_int(record.headers, h.RETRY_NOT_BEFORE, 0)
        wait_s = (not_before - time.time() * 1000) / 1000
        # A not-before further ahead than any tier sets (anyone can produce to a retry
        # topic) would hold every record behind it on its partition until then: due now.
        if wait_s <= 0 or wait_s > max(self.settings.retry_delays_s) + CLOCK_SKEW_S:
            return True
        link.seek(tp, record.offset)
        link.pause(tp)
        asyncio.get_running_loop().call_later(wait_s, self._resume, link, tp)
        return False

    @staticmethod
    def _resume(link: Link, tp: TopicPartition) -> None:
        if tp in link.assignment():
            link.resume(tp)


BATCH = 500  # records per poll, across all partitions
CLOCK_SKEW_S = 5.0  # how far the clock of the worker that set a not-before may be ahead
POLL_S = 0.1  # longest wait in one poll, so the consumer calls queued for it are not held up
REVOKE_GRACE_S = 1.0  # records in hand when partitions go: finished within this, or given up


def stage_limit(settings: Settings) -> asyncio.Semaphore | None:
    """How many messages a stage has in hand at once; None: one at a time."""
    concurrency = settings.stage_concurrency
    return asyncio.Semaphore(concurrency) if concurrency > 1 else None
