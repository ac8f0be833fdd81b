"""``mailroom demo``: the whole set-up on the embedded broker, end to end."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from rich.console import Console

from streams.admin import create_topics
from streams.broker import EmbeddedBroker
from streams.settings import Settings
from topics import catalog
from topics.codec import Codec, InboundCodec


def sample_email(n: int) -> dict[str, Any]:
    return {
        "message_id": f"<demo-{n}-{uuid.uuid4().hex[:12]}@mailroom.dev>",
        "received_at": int(time.time() * 1000),
        "sender": "ana.customer@example.com",
        "recipient": "support@mailroom.dev",
        "subject": "Charged twice for my March invoice",
        "body_text": "Hi, my card was charged twice for invoice INV-2291 (49.00 EUR). "
        "Please refund the duplicate. Thanks, Ana",
        "body_html": None,
        "headers": {},
        "in_reply_to": None,
        "attachments": [],
        "source": "demo",
    }


def run_demo(settings: Settings, console: Console) -> None:
    broker = EmbeddedBroker(settings)
    started = broker.pid() is None
    began = time.monotonic()
    broker.start()
    console.print(
        f"broker {'started' if started else 'already running'} "
        f"({time.monotonic() - began:.1f}s) on {settings.bootstrap_servers}"
    )
    try:
        result = create_topics(settings)
        console.print(f"topics: {len(result.created)} created, {len(result.existing)} existed")
        round_trips(settings, console)
    finally:
        if started:
            broker.stop()
            console.print("broker stopped")


def round_trips(settings: Settings, console: Console, count: int = 50) -> list[float]:
    """Produce sample emails one at a time and time each until it is consumed back."""
    topic = settings.topic(catalog.INBOUND)
    producer = Producer(settings.confluent_config(acks="all", **{"enable.idempotence": True}))
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": f"demo-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([topic])
    encoder, decoder = Codec("FeedbackEmail"), InboundCodec(max_bytes=settings.max_email_bytes)
    while not consumer.assignment():  # join the group before timing anything
        consumer.poll(0.1)
    latencies = []
    try:
        for n in range(count):
            email = sample_email(n)
            sent = time.perf_counter()
            producer.produce(topic, encoder.encode(email), key=email["message_id"])
            producer.flush(10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                if decoder.decode_inbound(msg.value())["message_id"] == email["message_id"]:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
            else:
                raise SystemExit(f"sample email {n} did not come back within 30s")
    finally:
        consumer.close()
    latencies.sort()
    console.print(
        f"{count} emails round-tripped through {topic} (Avro, acks=all, idempotent): "
        f"p50 {statistics.median(latencies):.1f} ms, "
        f"p95 {latencies[int(0.95 * (count - 1))]:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    return latencies
