"""Where a failed record goes: the next retry tier, or the dead-letter topic.

A retriable failure (``Unavailable``, or any error that is not a ``MailroomError`` marked
permanent) goes to ``<stage>.retry.<n>`` with ``mailroom.retry.attempt = n`` and
``mailroom.retry.not_before`` = now + the tier's delay. After the last tier, or at once for
a permanent failure (decode, schema, validation, oversize), it goes to ``<stage>.dlq``.
Both keep the original key, value bytes and headers, and add the DESIGN §5 headers; the
origin is always the stage's own input, so a dead letter is replayed to where it failed.
"""

from __future__ import annotations

import time
import traceback

from streams.engine.records import Incoming, Output
from streams.telemetry.logs import one_line, redact
from topics import headers as h
from topics.catalog import StageSpec
from topics.errors import MailroomError

MAX_ERROR_MESSAGE = 500
MAX_STACKTRACE = 4000


def is_retriable(exc: BaseException) -> bool:
    return exc.retriable if isinstance(exc, MailroomError) else True


def route_failure(
    spec: StageSpec, incoming: Incoming, exc: BaseException, delays_s: tuple[float, ...]
) -> Output:
    attempt = incoming.attempt
    now = int(time.time() * 1000)
    error_class = exc.error_class if isinstance(exc, MailroomError) else type(exc).__name__
    updates = {
        h.ORIGIN_TOPIC: incoming.topic,
        h.ORIGIN_PARTITION: str(incoming.partition),
        h.ORIGIN_OFFSET: str(incoming.offset),
        h.ORIGIN_TIMESTAMP: str(incoming.timestamp),
        h.ERROR_STAGE: spec.name,
        h.ERROR_CLASS: error_class,
        h.ERROR_MESSAGE: one_line(str(exc), MAX_ERROR_MESSAGE),
        h.ERROR_STACKTRACE: redact("".join(traceback.format_exception(exc)))[-MAX_STACKTRACE:],
        h.FIRST_FAILED_AT: h.get(incoming.headers, h.FIRST_FAILED_AT) or str(now),
    }
    if is_retriable(exc) and attempt < len(delays_s):
        updates[h.RETRY_ATTEMPT] = str(attempt + 1)
        # A server's Retry-After longer than the tier's delay wins.
        wait_s = max(delays_s[attempt], getattr(exc, "retry_after_s", None) or 0.0)
        updates[h.RETRY_NOT_BEFORE] = str(now + int(wait_s * 1000))
        topic = spec.retry_topic(attempt + 1)
    else:
        updates[h.RETRY_ATTEMPT] = str(attempt)
        topic = spec.dlq_topic
    headers = [(k, v) for k, v in incoming.headers if k != h.RETRY_NOT_BEFORE]
    return Output(topic, incoming.value, incoming.key or b"", h.replace(headers, updates))


def from_retry(record: Incoming) -> Incoming:
    """A record read from a retry topic, seen as its original input (from its headers)."""
    headers = record.headers
    return Incoming(
        topic=h.get(headers, h.ORIGIN_TOPIC) or record.topic,
        partition=h.get_int(headers, h.ORIGIN_PARTITION, record.partition),
        offset=h.get_int(headers, h.ORIGIN_OFFSET, record.offset),
        key=record.key,
        value=record.value,
        headers=headers,
        timestamp=h.get_int(headers, h.ORIGIN_TIMESTAMP, record.timestamp),
    )
