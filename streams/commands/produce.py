"""``mailroom produce``: emails from files onto ``emails.inbound``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.progress import Progress

from streams.commands.ingest import read_emails
from streams.engine.kafka import durable_producer
from streams.engine.writer import learn_topics
from streams.errors import DeliveryError
from streams.settings import Settings
from streams.telemetry.tracing import inject, producer_span
from topics import catalog
from topics import headers as h
from topics.codec import Codec


def produce_emails(
    settings: Settings,
    emails: Iterable[dict[str, Any]],
    *,
    rate: float | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """Produce every email (Avro) keyed by message id; return the ids, once all are acked."""
    topic = settings.topic(catalog.INBOUND)
    producer = durable_producer(settings)
    learn_topics(producer, [topic])  # the first email not held back ~500 ms
    codec = Codec("FeedbackEmail", max_bytes=None)
    failures: list[str] = []
    ids: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.key()!r}: {err}")

    task = progress.add_task("producing", total=None) if progress else None
    began = time.monotonic()
    for n, email in enumerate(emails, start=1):
        # poll() returns early when it serves a delivery report: wait until it is time.
        while rate and (wait := began + (n - 1) / rate - time.monotonic()) > 0:
            producer.poll(wait)
        key = email["message_id"].encode()
        # The root of the email's trace: every later hop continues it.
        with producer_span(topic, key, **{"mailroom.message_id": email["message_id"]}):
            headers = inject([(h.MESSAGE_ID, key), (h.CONTENT_TYPE, b"avro/binary")])
        producer.produce(
            topic, codec.encode(email), key=key, on_delivery=delivered, headers=headers
        )
        producer.poll(0)
        ids.append(email["message_id"])
        if progress and task is not None:
            progress.update(task, completed=n)
    # Until each email is acknowledged or librdkafka gives up on it (message.timeout.ms,
    # 5 minutes by default): a broker restarting meanwhile delays the command, loses nothing.
    remaining = producer.flush()
    if remaining or failures:
        raise DeliveryError(
            f"{len(failures) + remaining} of {len(ids)} emails were not delivered to {topic} "
            f"(first: {(failures or ['still queued'])[0]}); produce the same files again once "
            "the broker answers: message ids are kept, so an email delivered twice is still "
            "answered once"
        )
    return ids


def read_paths(paths: Iterable[Path]) -> Iterable[dict[str, Any]]:
    for path in paths:
        yield from read_emails(path)
