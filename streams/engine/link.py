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
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import TopicPartition as Partition

from streams.engine.reading import Reading
from streams.engine.records import Link, Output, Rebalance, TopicPartition
from streams.engine.writer import Lost, Stalled, Undelivered, Writer, describe
from streams.settings import Settings

log = logging.getLogger("mailroom.stage")


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class KafkaLink(Reading):
    """One consumer in the stage's group (``Reading``) and the producer that writes for
    it."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        client_id: str,
        stage: str,
        writes: tuple[str, ...] = (),
    ) -> None:
        """``writes``: the catalog topics the stage writes (their leaders are asked for at
        start, not at the first write)."""
        super().__init__(settings, group, client_id, stage)
        self.writes = writes
        instance = settings.instance_id or uuid.uuid4().hex[:12]
        self.writer = Writer(settings, stage, client_id, f"{group}.{instance}")
        self.once = self.writer.once  # one voice for both halves' warnings
        self.writing = ThreadPoolExecutor(1, thread_name_prefix=f"produce-{stage}")
        self._metadata: Any = None  # the group's, taken in a rebalance callback
        self._stash: dict[TopicPartition, int] = {}
        self._guard = threading.Lock()  # _in_callback against commits queued meanwhile
        self._stall = Stalled(stage)

    # -- the group's rebalances -----------------------------------------------------------
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
            with self._guard:
                self._in_callback = True
            self._run_ops()  # e.g. offsets queued to commit: while the partitions are ours
            try:
                asyncio.run_coroutine_threadsafe(run(), loop).result()
            finally:
                with self._guard:
                    self._in_callback = False
                if self._stash:  # at-least-once commits made during the hook
                    stash, self._stash = self._stash, {}
                    self._commit_offsets(stash)

        def assigned(consumer: Consumer, partitions: list[Partition]) -> None:
            try:
                # Offsets a pending transaction holds are waited for (require_stable), so
                # the stage's state is restored only once its inputs' offsets are final.
                found = consumer.committed(partitions, timeout=self.timeout_s)
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

        await loop.run_in_executor(self.writing, self.writer.learn, list(self.writes))
        if self.transactional:
            await loop.run_in_executor(self.writing, self.writer.recover)
        await loop.run_in_executor(
            self.reading,
            lambda: self.consumer.subscribe(
                topics, on_assign=assigned, on_revoke=revoked, on_lost=lost
            ),
        )

    async def commit(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        """Write ``outputs`` and commit ``offsets``; exactly-once: in one transaction.

        Retried until it works (the stage stalls meanwhile, nothing is dropped), except
        when the group has moved on (``Lost``) or the runner is stopping."""
        assert self._loop is not None
        loop = self._loop
        if self._in_callback:
            metadata = self._metadata
        else:
            offsets, metadata = self._past_markers(offsets), self._read_metadata
            if metadata is None and self.transactional:  # nothing read yet
                metadata = await loop.run_in_executor(
                    self.reading, self.consumer.consumer_group_metadata
                )
        delay = 0.1
        while True:
            try:
                if self.transactional:
                    # the offsets that moved; a transaction of emitted outputs only sends
                    # one partition's committed offset again, so that it too is checked
                    # against the group's generation
                    sent = offsets or self._one_known()
                    await loop.run_in_executor(
                        self.writing, self.writer.transaction, outputs, sent, metadata
                    )
                    self._known.update({tp: n for tp, n in offsets.items() if tp in self._assigned})
                else:
                    outputs = await loop.run_in_executor(self.writing, self.writer.deliver, outputs)
                    if outputs:
                        raise Undelivered(outputs)
                    await self._commit_offsets_soon(offsets)
            except Lost:
                self._stall.recovered()
                raise
            except Exception as exc:
                self._stall.failed(f"write {len(outputs)} outputs", exc)
                if stop.is_set():
                    raise
                # each failed try already waited out the client's timeouts: a short,
                # capped pause (up to 2 s, it held stages back once a dead node's
                # partitions had new leaders)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            self._stall.recovered()
            return

    def _one_known(self) -> dict[TopicPartition, int]:
        for tp, n in self._known.items():
            if tp in self._assigned:
                return {tp: n}
        return {}

    async def _commit_offsets_soon(self, offsets: dict[TopicPartition, int]) -> None:
        """At-least-once: the offsets committed on the reading thread, before its next
        poll, or by the rebalance callback under way (which runs what is queued before
        it gives partitions up, and commits what comes in meanwhile after its hook)."""
        if not offsets:
            return
        assert self._loop is not None
        loop = self._loop
        done: asyncio.Future[None] = loop.create_future()

        def commit() -> None:
            try:
                self._commit_offsets(offsets)
            finally:
                loop.call_soon_threadsafe(_settle, done)

        with self._guard:
            if self._in_callback:
                self._stash.update(offsets)
                return
            self._ops.append(commit)
        # Run now if no poll is under way, else right after it.
        _ = loop.run_in_executor(self.reading, self._run_ops)
        await done

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
