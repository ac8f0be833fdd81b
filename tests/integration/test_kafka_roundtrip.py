"""Every schema through the real broker, with both Kafka clients the project uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer

from streams.settings import Settings
from tests.kafka_helpers import consume_all, make_topics, unique
from tests.samples import SAMPLES
from topics import headers as h
from topics.codec import Codec
from topics.registry import TOP_LEVEL

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_confluent_kafka_round_trip(kafka: Settings, name: str) -> None:
    (topic,) = make_topics(kafka, f"roundtrip.{name.lower()}")
    codec = Codec(name)
    records = [SAMPLES[name](n) for n in range(5)]
    producer = Producer(kafka.confluent_config(**{"acks": "all", "enable.idempotence": True}))
    for record in records:
        key = record["message_id"].encode()
        producer.produce(topic, codec.encode(record), key=key, headers=[(h.MESSAGE_ID, key)])
    assert producer.flush(10) == 0
    got = consume_all(kafka, topic, len(records))
    assert sorted((m.value() for m in got), key=bytes) == sorted(
        (codec.encode(r) for r in records), key=bytes
    )
    decoded = sorted((codec.decode(m.value()) for m in got), key=lambda r: r["message_id"])
    assert decoded == sorted(records, key=lambda r: r["message_id"])
    assert all(h.get(m.headers(), h.MESSAGE_ID) == m.key().decode() for m in got)


@pytest.mark.parametrize("name", TOP_LEVEL)
async def test_aiokafka_round_trip(kafka: Settings, name: str) -> None:
    (topic,) = make_topics(kafka, f"roundtrip.{name.lower()}")
    codec = Codec(name)
    records = [SAMPLES[name](n) for n in range(5)]
    producer = AIOKafkaProducer(**kafka.aiokafka_config(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                topic, codec.encode(record), key=record["message_id"].encode()
            )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.aiokafka_config(),
        group_id=unique("g"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = []
    try:
        async with asyncio.timeout(30):
            while len(got) < len(records):
                batch = await consumer.getmany(timeout_ms=500)
                got.extend(m for msgs in batch.values() for m in msgs)
    finally:
        await consumer.stop()
    decoded = {codec.decode(m.value)["message_id"]: codec.decode(m.value) for m in got}
    assert decoded == {r["message_id"]: r for r in records}
    # Keyed by message id: one email always lands on the same partition.
    by_key = {m.key: m.partition for m in got}
    assert len(by_key) == len(records)


def test_json_produced_by_a_plain_client_decodes_on_inbound(kafka: Settings) -> None:
    from topics.codec import InboundCodec

    (topic,) = make_topics(kafka, "emails.inbound")
    producer = Producer(kafka.confluent_config())
    producer.produce(
        topic,
        b'{"sender": "kc@example.com", "body_text": "My app crashes"}',
        key=b"<kc-1@example.com>",
    )
    assert producer.flush(10) == 0
    (msg,) = consume_all(kafka, topic, 1)
    record = InboundCodec().decode_inbound(
        msg.value(), key=msg.key(), timestamp_ms=msg.timestamp()[1]
    )
    assert record["message_id"] == "<kc-1@example.com>"
    assert record["received_at"] == msg.timestamp()[1]


def test_produce_at_a_rate_spreads_the_emails_over_time(kafka: Settings) -> None:
    """``mailroom produce --rate 40``: 41 emails take a second on the broker's clock,
    even though every delivery report wakes the producer's poll early."""
    from streams.commands.admin import create_topics
    from streams.commands.produce import produce_emails
    from streams.engine.kafka import read_records
    from topics import catalog

    create_topics(kafka)
    emails = [SAMPLES["FeedbackEmail"](n) for n in range(41)]
    produce_emails(kafka, emails, rate=40.0)
    stamps = sorted(r.timestamp for r in read_records(kafka, catalog.INBOUND))
    assert len(stamps) == 41
    assert stamps[-1] - stamps[0] >= 950  # 40 gaps of 25 ms
    assert stamps[20] - stamps[0] >= 450  # evenly, not a burst at the end


def test_a_file_that_cannot_be_read_keeps_the_emails_before_it(
    kafka: Settings, tmp_path: Path
) -> None:
    """``mailroom produce a.jsonl b.jsonl``: a bad line in b stops the command with its file
    and line, and every email of a and of b before that line is on the broker."""
    from streams.commands.admin import create_topics
    from streams.commands.produce import produce_emails, read_paths
    from streams.engine.kafka import read_records
    from streams.errors import IngestError
    from topics import catalog

    create_topics(kafka)
    (tmp_path / "a.jsonl").write_text('{"body": "one"}\n{"body": "two"}\n')
    (tmp_path / "b.jsonl").write_text('{"body": "three"}\n{"body": "four\n')
    with pytest.raises(IngestError, match=r"b.jsonl: line 2 is not JSON\n3 emails before it"):
        produce_emails(kafka, read_paths([tmp_path / "a.jsonl", tmp_path / "b.jsonl"]))
    decoded = [Codec("FeedbackEmail").decode(r.value) for r in read_records(kafka, catalog.INBOUND)]
    assert sorted(e["body_text"] for e in decoded) == ["one", "three", "two"]


def test_an_email_larger_than_kafka_takes_is_named_and_the_others_produced(
    kafka: Settings,
) -> None:
    from streams.commands.admin import create_topics
    from streams.commands.produce import produce_emails
    from streams.engine.kafka import read_records
    from streams.errors import DeliveryError
    from topics import catalog

    create_topics(kafka)
    emails = [SAMPLES["FeedbackEmail"](n) for n in range(3)]
    emails[1]["body_text"] = "x" * 3_000_000
    with pytest.raises(DeliveryError, match=r"1 of 3 emails .*3,000,\d+ bytes, more than Kafka"):
        produce_emails(kafka, emails)
    produced = {r.key for r in read_records(kafka, catalog.INBOUND)}
    assert produced == {emails[0]["message_id"].encode(), emails[2]["message_id"].encode()}
