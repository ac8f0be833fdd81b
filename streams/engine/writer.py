"""The writing half of a stage's link: one producer, and a transaction per commit.

Exactly-once: the outputs, then the offsets with the consumer's group metadata, then the
commit, in one transaction. A failed one is aborted before the next begins; librdkafka's
abort and init may time out and are then called again ("resumed") by the next attempt,
and a producer left fatally broken (fenced, or its epoch lost) is replaced by a new one
with the same transactional id. At-least-once: send, wait for every acknowledgement.
Everything here blocks: it runs on the link's writing thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as Partition

from streams.engine.records import Output, TopicPartition, folded
from streams.settings import Settings
from streams.telemetry import metrics

log = logging.getLogger("mailroom.stage")

#: How long a producer waits to fill a batch: not at all. A stage writes a commit's
#: outputs at once and the commit sends them; a linger only delays every hop (5 ms cost
#: a hop 2.5 of its 5 ms at low load).
LINGER_MS = 0
#: First and longest wait before a request is tried again (librdkafka: 100 ms, 1 s).
RETRY_BACKOFF_MS = 5
RETRY_BACKOFF_MAX_MS = 100
#: Offset-commit errors that mean the partitions are no longer this member's.
NOT_OURS = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


class Lost(Exception):
    """The group moved on: the partitions are another member's now; nothing was
    committed and the records in hand are its to process again."""


class Stalled:
    """Says once that a runner cannot write, and once that it can again."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.on = False

    def failed(self, what: str, exc: BaseException) -> None:
        if not self.on:
            log.error(
                "stage %s stalled: cannot %s (%s); input not committed, retrying",
                self.stage,
                what,
                describe(exc),
            )
        self.on = True
        metrics.STALLED.labels(self.stage).set(1)

    def recovered(self) -> None:
        if self.on:
            log.warning("stage %s recovered: outputs written", self.stage)
            metrics.STALLED.labels(self.stage).set(0)
        self.on = False


class Undelivered(Exception):
    def __init__(self, outputs: list[Output]) -> None:
        super().__init__(f"{len(outputs)} outputs not acknowledged")
        self.outputs = outputs


DURABLE = {"acks": "all", "enable.idempotence": True}


class Once:
    """Logs each distinct warning line once (a client retries many times a second)."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def warn(self, line: str) -> None:
        if line not in self.said:
            self.said.add(line)
            log.warning("%s", line)


class Writer:
    """A stage's producer: transactional (exactly-once) or idempotent (at-least-once)."""

    def __init__(self, settings: Settings, stage: str, client_id: str, txn_id: str) -> None:
        self.settings = settings
        self.stage = stage
        self.client_id = client_id
        self.txn_id = txn_id
        self.transactional = settings.exactly_once
        self.producer = self._producer()
        self._needs_init = self.transactional  # init_transactions before the first one
        self._needs_abort = False
        self.once = Once()  # the link's reading half says its warnings through it too

    @property
    def timeout_s(self) -> float:
        """How long one blocking client call may take (both halves of the link)."""
        return max(10.0, self.settings.transaction_timeout_ms / 1000 * 3)

    def _producer(self) -> Producer:
        extra: dict[str, Any] = {
            "linger.ms": LINGER_MS,
            "client.id": self.client_id,
            # A transaction that begins while the last one's commit markers are still
            # being written is told CONCURRENT_TRANSACTIONS and tried again after the
            # retry backoff: librdkafka's 100 ms stalled a stage every few commits.
            "retry.backoff.ms": RETRY_BACKOFF_MS,
            "retry.backoff.max.ms": RETRY_BACKOFF_MAX_MS,
        }
        if self.transactional:
            timeout = self.settings.transaction_timeout_ms
            extra |= {
                "transactional.id": self.txn_id,
                "transaction.timeout.ms": timeout,
                "message.timeout.ms": timeout,
            }
        return Producer(self.settings.confluent_config(**extra, **DURABLE))

    def transaction(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], metadata: Any
    ) -> None:
        """One transaction: every output, then the offsets with the group's metadata.

        A failed one is aborted before the next begins; librdkafka's abort and init may
        time out and are then called again ("resumed") by the next attempt, and a producer
        left fatally broken (fenced, or its epoch lost) is replaced by a new one with the
        same transactional id."""
        self.recover()
        producer = self.producer
        try:
            producer.begin_transaction()
            for o in folded(outputs):
                self._produce(o)
            if offsets:
                producer.send_offsets_to_transaction(
                    [Partition(tp.topic, tp.partition, n) for tp, n in offsets.items()],
                    metadata,
                    self.timeout_s,
                )
            self._end(producer)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                self._renew(error)
            else:
                self._needs_abort = True
            if error.code() in NOT_OURS:
                raise Lost(describe(error)) from exc
            raise

    def learn(self, topics: list[str]) -> None:
        """Ask for the leaders of ``topics`` now: librdkafka holds a topic's first record
        until it knows them, and an idempotent producer's first write waited ~500 ms on
        the bench machine (each stage's first output, after every start)."""
        learn_topics(self.producer, [self.settings.topic(t) for t in topics])

    def recover(self) -> None:
        """Finish the init or abort a failed attempt left behind (both resumable)."""
        try:
            if self._needs_init:
                self.producer.init_transactions(self.timeout_s)
                self._needs_init = False
            if self._needs_abort:
                try:
                    self.producer.abort_transaction(self.timeout_s)
                except KafkaException as exc:
                    error: KafkaError = exc.args[0]
                    if error.retriable() or error.fatal():
                        raise
                    # nothing to abort (no transaction began): done
                self._needs_abort = False
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():
                self._renew(error)
            raise

    def _renew(self, error: KafkaError) -> None:
        log.warning(
            "stage %s: producer unusable (%s); a new one takes over", self.stage, describe(error)
        )
        self.producer = self._producer()
        self._needs_init, self._needs_abort = True, False

    def _end(self, producer: Producer) -> None:
        """Commit, calling again while the error says to (a retriable commit)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                producer.commit_transaction(self.timeout_s)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not error.retriable() or time.monotonic() > deadline:
                    raise

    def _produce(self, o: Output, on_delivery: Callable[..., None] | None = None) -> None:
        topic = self.settings.topic(o.topic)
        while True:
            try:
                self.producer.produce(
                    topic, o.value, o.key, headers=o.headers, on_delivery=on_delivery
                )
                return
            except BufferError:  # the local queue is full: let it drain
                self.producer.poll(0.05)

    def deliver(self, outputs: list[Output]) -> list[Output]:
        """At-least-once: send, wait for the acknowledgements; the outputs not acked."""
        failed: list[Output] = []

        def report(o: Output) -> Callable[[KafkaError | None, Any], None]:
            def delivered(error: KafkaError | None, _message: Any) -> None:
                if error is not None:
                    failed.append(o)
                    self.once.warn(f"stage {self.stage} cannot write: {describe(error)}")

            return delivered

        for o in folded(outputs):
            self._produce(o, report(o))
        left = self.producer.flush(self.timeout_s)
        if left:
            raise Undelivered([])
        return failed


def learn_topics(producer: Producer, topics: list[str], timeout_s: float = 5.0) -> None:
    """Fetch the metadata of ``topics`` (one request each); what is not there yet is left
    to the first write."""
    for topic in topics:
        try:
            producer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            log.info("no metadata for %s yet: %s", topic, describe(exc))


def describe(error: object) -> str:
    """One line for a librdkafka error (KafkaError or the KafkaException around one)."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return f"{type(error).__name__}: {error}"
