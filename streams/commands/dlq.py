"""``mailroom dlq list|show``: what is parked in the dead-letter topics, and why."""

from __future__ import annotations

from collections import Counter
from typing import Any

from streams.engine.kafka import read_records
from streams.settings import Settings
from topics import catalog
from topics import headers as h


def dlq_counts(settings: Settings) -> Counter[tuple[str, str]]:
    """(stage, error class) -> number of dead letters."""
    counts: Counter[tuple[str, str]] = Counter()
    for spec in catalog.STAGES:
        for record in read_records(settings, spec.dlq_topic):
            counts[(spec.name, h.get(record.headers, h.ERROR_CLASS) or "?")] += 1
    return counts


def dlq_records(
    settings: Settings, stage: str | None, *, show_bodies: bool, limit: int
) -> list[dict[str, Any]]:
    stages = [catalog.stage(stage)] if stage else list(catalog.STAGES)
    shown: list[dict[str, Any]] = []
    for spec in stages:
        for record in read_records(settings, spec.dlq_topic):
            headers = {k: (v or b"").decode("utf-8", errors="replace") for k, v in record.headers}
            headers.pop(h.ERROR_STACKTRACE, None)
            value = record.value or b""
            body = (
                value.decode("utf-8", errors="replace")
                if show_bodies
                else f"<{len(value)} bytes redacted; --show-bodies to see>"
            )
            shown.append(
                {
                    "topic": spec.dlq_topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": (record.key or b"").decode("utf-8", errors="replace"),
                    "headers": headers,
                    "value": body,
                }
            )
            if len(shown) >= limit:
                return shown
    return shown
