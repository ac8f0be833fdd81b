"""The Kafka clients, configured from the settings, for both client stacks.

Stages and operator commands run on confluent-kafka (``streams.engine.link`` holds the
stage's); aiokafka reads a few topics to their end from asyncio code (the join's
changelog, the terminal ledger, the budget), committed records only. Both take their
connection and security options from ``Settings``, and both take
``MAILROOM_CLIENT_OPTIONS`` (librdkafka names, e.g. ``{"linger.ms": 5}``): confluent-kafka
verbatim, aiokafka where it has an argument of the same name (``linger_ms``). Producers
that carry stage outputs are durable: acks=all and idempotence, set here explicitly,
whatever the options say.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka import TopicPartition as AsyncPartition
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.engine.records import Incoming
from streams.engine.writer import DURABLE, LINGER_MS
from streams.errors import KafkaUnreachableError
from streams.settings import Settings


def durable_producer(settings: Settings, **extra: Any) -> Producer:
    """confluent-kafka, acks=all and idempotence: no loss, no duplicates from retries."""
    return Producer(settings.confluent_config(**{"linger.ms": LINGER_MS, **extra, **DURABLE}))


def check_connection(settings: Settings, timeout_s: float = 15.0) -> None:
    """Raise ``KafkaUnreachableError`` saying why when the cluster cannot be reached or
    refuses these settings' credentials or TLS; return when it answers."""
    errors: list[KafkaError] = []
    admin = AdminClient(settings.confluent_config(error_cb=errors.append, log_level=0))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks: why the connection failed
            fatal = [e for e in errors if e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)]
            if fatal or time.monotonic() > deadline:
                errors.append(exc.args[0])
                break
    where = f"Kafka at {settings.bootstrap_servers} ({settings.security_protocol})"
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    if auth:
        raise KafkaUnreachableError(
            f"{where} refused the credentials of user {settings.sasl_username!r} "
            f"({settings.mechanism}): {auth[0].str()}; check MAILROOM_SASL_USERNAME and "
            "MAILROOM_SASL_PASSWORD"
        )
    tls = [e for e in errors if e.code() == KafkaError._SSL]
    if tls:
        raise KafkaUnreachableError(
            f"{where}: TLS failed: {tls[0].str()}; check MAILROOM_SSL_CAFILE"
        )
    raise KafkaUnreachableError(
        f"cannot reach {where} within {timeout_s:.0f}s: {errors[-1].str()}; is the broker "
        "running (mailroom broker start) and MAILROOM_BOOTSTRAP_SERVERS right?"
    )


def reader(settings: Settings, *, group: str | None = None, **extra: Any) -> Consumer:
    """A confluent-kafka consumer that reads from the beginning and commits nothing."""
    return Consumer(
        settings.confluent_config(
            **{
                "group.id": group or f"{settings.app_id}-reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                **extra,
            }
        )
    )


@cache
def _arguments(client: type) -> frozenset[str]:
    return frozenset(inspect.signature(client).parameters)


def async_options(settings: Settings, client: type, **defaults: Any) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: connection and security, ``defaults``,
    then every client option the client has an argument for (``linger.ms`` ->
    ``linger_ms``)."""
    options = {**settings.aiokafka_config(), **defaults}
    known = _arguments(client)
    for name, value in settings.client_options.items():
        argument = name.replace(".", "_")
        if argument in known:
            options[argument] = value
    return options


def consumer_config(settings: Settings, group: str, client_id: str) -> dict[str, Any]:
    """A stage's consumer: offsets committed by the runner only, committed records only,
    partition n of every input on one member (the ``range`` assignor deals each topic's
    partitions out in the same order, and every stage's inputs have the same partition
    count). With the consumer group protocol of KIP-848 (Kafka 4) the broker runs the
    assignor and moves only the partitions that change owner, and the broker's
    ``group.consumer.session.timeout.ms`` says when a dead member is noticed; with the
    classic protocol every rebalance deals all partitions again, and a dead member is
    noticed after ``session_timeout_ms``."""
    common: dict[str, Any] = {
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "queued.max.messages.kbytes": 16384,
        "max.partition.fetch.bytes": 262144,
        "fetch.wait.max.ms": 50,
    }
    protocol: dict[str, Any]
    if settings.group_protocol == "consumer":
        protocol = {"group.protocol": "consumer", "group.remote.assignor": "range"}
    else:
        protocol = {
            "partition.assignment.strategy": "range",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 6),
        }
    return settings.confluent_config(**common, **protocol)


def plain_consumer(settings: Settings, *, committed: bool = True) -> AIOKafkaConsumer:
    """An aiokafka consumer without a group, for reading partitions it assigns itself;
    committed records only (its end offsets are then the last stable ones)."""
    options = async_options(settings, AIOKafkaConsumer)
    return AIOKafkaConsumer(
        **{
            **options,
            "group_id": None,
            "enable_auto_commit": False,
            "isolation_level": "read_committed" if committed else "read_uncommitted",
        }
    )


def read_records(settings: Settings, topic: str) -> list[Incoming]:
    """Every record now in ``topic`` (catalog name), up to the end offsets seen at start."""
    consumer = reader(settings)
    name = settings.topic(topic)
    try:
        metadata = consumer.list_topics(name, timeout=10)
        topic_md = metadata.topics.get(name)
        if topic_md is None or topic_md.error is not None:
            return []
        ends = {}
        for p in topic_md.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(name, p, 0) for p in ends])
        found: list[Incoming] = []

        def keep(msg: Message) -> None:
            found.append(
                Incoming(
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    msg.key(),
                    msg.value(),
                    list(msg.headers() or ()),
                    msg.timestamp()[1],
                )
            )

        consume_to(consumer, {(name, p): end for p, end in ends.items()}, keep)
        return found
    finally:
        consumer.close()


def consume_to(
    consumer: Consumer, ends: dict[tuple[str, int], int], each: Callable[[Message], None]
) -> None:
    """Hand ``each`` every record of the assigned partitions up to their ``ends``.

    Done when a partition's position reaches its end, not when a record's offset does: a
    transaction's commit marker takes an offset and is never handed out, and a pending
    transaction's records wait until it ends (read committed)."""
    todo = dict(ends)
    while todo:
        for msg in consumer.consume(1000, timeout=0.5):
            if not msg.error():
                each(msg)
        for tp in consumer.position([TopicPartition(t, p) for t, p in todo]):
            if tp.offset >= todo[(tp.topic, tp.partition)]:
                del todo[(tp.topic, tp.partition)]


def read_keys(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
    return [(r.key, r.value, r.timestamp) for r in read_records(settings, topic)]


async def read_to_end(
    settings: Settings, topic: str, numbers: set[int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record now in partitions ``numbers`` of ``topic`` (catalog name),
    in order, including those of transactions still being completed.

    Read to the high watermark, not to the last stable offset: a transaction whose commit
    has returned may not have its markers written yet, and its records (the join's first
    half, the decider's last outcome) would be missed. A transaction left open by a dead
    worker is waited for until the broker aborts it (``transaction_timeout_ms``)."""
    name = settings.topic(topic)
    parts = [AsyncPartition(name, n) for n in sorted(numbers)]
    if not parts:
        return []
    ender = plain_consumer(settings, committed=False)
    await ender.start()
    try:
        ends = await ender.end_offsets(parts)
    finally:
        await ender.stop()
    consumer = plain_consumer(settings)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        todo = {tp for tp in parts if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for records in batch.values():
                found.extend(records)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return found
