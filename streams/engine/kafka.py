"""The Kafka clients, configured from the settings, for both client stacks.

The worker runs on aiokafka (asyncio); the operator commands use confluent-kafka. Both
take their connection and security options from ``Settings``, and both take
``MAILROOM_CLIENT_OPTIONS`` (librdkafka names, e.g. ``{"linger.ms": 5}``): confluent-kafka
verbatim, aiokafka where it has an argument of the same name (``linger_ms``). Producers
that carry stage outputs are durable: acks=all and idempotence, set here explicitly,
whatever the options say. Reading a topic to its end, once per stack, is here too.
"""

from __future__ import annotations

import inspect
import uuid
from functools import cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka import TopicPartition as AsyncPartition
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.engine.assignor import CoPartitionedAssignor
from streams.engine.records import Incoming
from streams.settings import Settings

#: How long a producer waits to fill a batch, on both stacks.
LINGER_MS = 5
DURABLE = {"acks": "all", "enable.idempotence": True}


def durable_producer(settings: Settings, **extra: Any) -> Producer:
    """confluent-kafka, acks=all and idempotence: no loss, no duplicates from retries."""
    return Producer(settings.confluent_config(**{"linger.ms": LINGER_MS, **extra, **DURABLE}))


def reader(settings: Settings, *, group: str | None = None, **extra: Any) -> Consumer:
    """A confluent-kafka consumer that reads from the beginning and commits nothing."""
    return Consumer(
        settings.confluent_config(
            **{
                "group.id": group or f"{settings.app_id}-reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
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


def durable_async_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """aiokafka, acks=all and idempotence (aiokafka's default is acks=1 without)."""
    options = async_options(settings, AIOKafkaProducer, linger_ms=LINGER_MS, client_id=client_id)
    return AIOKafkaProducer(**{**options, "acks": "all", "enable_idempotence": True})


def stage_consumer(
    settings: Settings, group: str, client_id: str, **extra: Any
) -> AIOKafkaConsumer:
    """A stage's consumer: its group, offsets committed by the runner only, partition n
    of every input topic on one member (``CoPartitionedAssignor``)."""
    options = async_options(
        settings,
        AIOKafkaConsumer,
        group_id=group,
        auto_offset_reset="earliest",
        client_id=client_id,
        partition_assignment_strategy=(CoPartitionedAssignor,),
        **extra,
    )
    return AIOKafkaConsumer(**{**options, "enable_auto_commit": False})


def plain_consumer(settings: Settings) -> AIOKafkaConsumer:
    """An aiokafka consumer without a group, for reading partitions it assigns itself."""
    options = async_options(settings, AIOKafkaConsumer)
    return AIOKafkaConsumer(**{**options, "group_id": None, "enable_auto_commit": False})


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
        found = []
        while ends:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
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
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        return found
    finally:
        consumer.close()


def read_keys(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
    return [(r.key, r.value, r.timestamp) for r in read_records(settings, topic)]


async def read_to_end(
    settings: Settings, topic: str, numbers: set[int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now in partitions ``numbers`` of ``topic`` (catalog name), in order."""
    name = settings.topic(topic)
    parts = [AsyncPartition(name, n) for n in sorted(numbers)]
    if not parts:
        return []
    consumer = plain_consumer(settings)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
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
