"""Kafka header names. Values are UTF-8; integers are decimal strings; times are epoch millis.

``traceparent``/``tracestate`` carry the W3C trace context; everything of ours is under
``mailroom.``. Retry and dead-letter records keep the original headers and add these.
"""

from __future__ import annotations

import re

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Which record this is and how it is encoded.
CONTENT_TYPE = "mailroom.content_type"  # "avro/binary" or "application/json"
MESSAGE_ID = "mailroom.message_id"

# Where a retried or dead-lettered record came from.
ORIGIN_TOPIC = "mailroom.origin.topic"
ORIGIN_PARTITION = "mailroom.origin.partition"
ORIGIN_OFFSET = "mailroom.origin.offset"
ORIGIN_TIMESTAMP = "mailroom.origin.timestamp"

# What went wrong.
ERROR_STAGE = "mailroom.error.stage"
ERROR_CLASS = "mailroom.error.class"
ERROR_MESSAGE = "mailroom.error.message"
ERROR_STACKTRACE = "mailroom.error.stacktrace"

# Retry bookkeeping.
RETRY_ATTEMPT = "mailroom.retry.attempt"
RETRY_NOT_BEFORE = "mailroom.retry.not_before"
FIRST_FAILED_AT = "mailroom.first_failed_at"

# Which half of the triage join a join.changelog record holds: "classified" or "scored".
JOIN_HALF = "mailroom.join.half"

# Replay bookkeeping.
REPLAY_ID = "mailroom.replay.id"
REPLAY_COUNT = "mailroom.replay.count"

#: Headers that describe one failure; a retry or replay replaces them rather than stacking.
FAILURE_HEADERS = frozenset(
    {
        ORIGIN_TOPIC,
        ORIGIN_PARTITION,
        ORIGIN_OFFSET,
        ORIGIN_TIMESTAMP,
        ERROR_STAGE,
        ERROR_CLASS,
        ERROR_MESSAGE,
        ERROR_STACKTRACE,
        RETRY_NOT_BEFORE,
    }
)

Headers = list[tuple[str, bytes]]


def get(headers: Headers | None, name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", errors="replace")
    return found


def get_int(headers: Headers | None, name: str, default: int) -> int:
    """The last value of header ``name`` as a count, offset or time (a whole number from 0
    to 2**63 - 1), or ``default`` when it is missing or not one: anyone can produce to a
    topic, with any header."""
    value = get(headers, name)
    if value is None or not _COUNT.fullmatch(value) or int(value) >= 2**63:
        return default
    return int(value)


_COUNT = re.compile(r"[0-9]{1,19}")


def replace(headers: Headers | None, updates: dict[str, str]) -> Headers:
    """Headers with ``updates`` set (any earlier value of those names removed)."""
    kept = [(k, v) for k, v in headers or () if k not in updates]
    kept.extend((k, v.encode("utf-8")) for k, v in updates.items())
    return kept
