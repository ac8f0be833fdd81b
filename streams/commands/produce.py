"""``mailroom produce``: emails from files onto ``emails.inbound``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from rich.progress import Progress

from streams.commands.ingest import read_emails
from streams.engine.kafka import durable_producer
from streams.engine.writer import learn_topics
from streams.errors import DeliveryError, IngestError
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
    """Produce every email (Avro) keyed by message id; return the ids, once all are acked.
    An email larger than Kafka takes is named, not produced; the others still are."""
    topic = settings.topic(catalog.INBOUND)
    producer = durable_producer(settings)
    learn_topics(producer, [topic])  # the first email not held back ~500 ms
    codec = Codec("FeedbackEmail", max_bytes=None)
    failures: list[str] = []  # queued, not acknowledged
    refused: list[str] = []  # larger than Kafka takes
    ids: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.key()!r}: {err}")

    task = progress.add_task("producing", total=None) if progress else None
    began = time.monotonic()
    try:
        for n, email in enumerate(emails, start=1):
            # poll() returns early when it serves a delivery report: wait until it is time.
            while rate and (wait := began + (n - 1) / rate - time.monotonic()) > 0:
                producer.poll(wait)
            key = email["message_id"].encode()
            # The root of the email's trace: every later hop continues it.
            with producer_span(topic, key, **{"mailroom.message_id": email["message_id"]}):
                headers = inject([(h.MESSAGE_ID, key), (h.CONTENT_TYPE, b"avro/binary")])
            value = codec.encode(email)
            if _send(producer, topic, key, value, headers, delivered):
                ids.append(email["message_id"])
            else:
                refused.append(
                    f"{email['message_id']!r}: {len(value):,} bytes, more than Kafka takes "
                    "(message.max.bytes); shorten it or send it to a person"
                )
            if progress and task is not None:
                progress.update(task, completed=n)
    except IngestError as exc:  # a file that cannot be read: what came before it is kept
        producer.flush()
        lost = failures + refused
        raise IngestError(
            f"{exc}\n{len(ids) - len(failures)} emails before it were produced"
            f"{f' ({len(lost)} were not: {lost[0]})' if lost else ''}, none after "
            "it; mend it and produce the same files again: message ids are kept, so an "
            "email produced twice is still answered once"
        ) from exc
    # Until each email is acknowledged or librdkafka gives up on it (message.timeout.ms,
    # 5 minutes by default): a broker restarting meanwhile delays the command, loses nothing.
    remaining = producer.flush()
    if remaining or failures or refused:
        lost = refused + failures or ["still queued"]
        raise DeliveryError(
            f"{len(refused) + len(failures) + remaining} of {len(ids) + len(refused)} emails "
            f"were not delivered to {topic} (first: {lost[0]}); the others "
            "were. Produce the same files again once the cause is mended: message ids are "
            "kept, so an email delivered twice is still answered once"
        )
    return ids


def _send(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    headers: list[tuple[str, bytes]],
    delivered: Callable[[Any, Any], None],
) -> bool:
    """Queue one record; False if it is larger than Kafka takes. A full local queue (a
    file read faster than the broker acknowledges) is waited out, not an error."""
    while True:
        try:
            producer.produce(topic, value, key=key, on_delivery=delivered, headers=headers)
        except BufferError:
            producer.poll(0.1)
            continue
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                return False
            raise
        producer.poll(0)
        return True


def read_paths(paths: Iterable[Path]) -> Iterable[dict[str, Any]]:
    for path in paths:
        yield from read_emails(path)
