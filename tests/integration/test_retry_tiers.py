"""Retry tiers come from one setting: with four delays, ``topics create`` makes four tier
topics, the retry runner reads all four, and a record failing four times still arrives."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Producer

from processors.errors import Unavailable
from streams.commands.admin import create_topics, list_topics
from streams.engine.kafka import read_keys
from streams.engine.records import Incoming, Output
from streams.engine.runner import StageRunner
from streams.settings import Settings
from tests.kafka_helpers import consume_all
from topics import catalog

pytestmark = pytest.mark.integration


async def test_four_delays_make_four_tiers_and_nothing_stalls(kafka: Settings) -> None:
    settings = kafka.model_copy(update={"retry_delays_s": (0.05, 0.05, 0.05, 0.05)})
    create_topics(settings)
    names = {t.name for t in list_topics(settings)}
    assert settings.topic("extract.retry.4") in names
    assert settings.topic("extract.retry.5") not in names

    spec = catalog.stage("extract")
    attempts: list[int] = []

    async def flaky(record: Incoming) -> list[Output]:
        attempts.append(record.attempt)
        if record.attempt < 4:
            raise Unavailable(f"down on attempt {record.attempt}")
        return [Output(catalog.EXTRACTED, record.value, record.key or b"")]

    producer = Producer(settings.confluent_config(**{"acks": "all"}))
    producer.produce(settings.topic(catalog.ROUTE_TOPICS[0]), b"ticket", key=b"<tiers@x>")
    assert producer.flush(10) == 0

    stop = asyncio.Event()
    runners = [
        StageRunner(spec, flaky, settings),
        StageRunner(spec, flaky, settings, retries=True),
    ]
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:
        arrived = await asyncio.to_thread(
            consume_all, settings, settings.topic(catalog.EXTRACTED), 1, 60
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert [m.value() for m in arrived] == [b"ticket"]
    assert attempts == [0, 1, 2, 3, 4]
    for tier in range(1, 5):
        assert len(read_keys(settings, f"extract.retry.{tier}")) == 1
    assert read_keys(settings, "extract.dlq") == []
