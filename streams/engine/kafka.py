"""Kafka clients configured from the settings: durable producers, plain consumers."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from streams.settings import Settings


def durable_producer(settings: Settings, **extra: Any) -> Producer:
    """acks=all and idempotence, set explicitly: no loss, no duplicates from retries."""
    return Producer(
        settings.confluent_config(
            **{"acks": "all", "enable.idempotence": True, "linger.ms": 5, **extra}
        )
    )


def reader(settings: Settings, *, group: str | None = None, **extra: Any) -> Consumer:
    """A consumer that reads from the beginning and commits nothing unless told to."""
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
