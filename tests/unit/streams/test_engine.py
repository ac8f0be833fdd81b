"""The engine without a broker: fair polls, the in-flight tracker, and the real runner on
an in-memory consumer and producer."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from processors.errors import Rejected, Unavailable
from streams.engine.inflight import InFlight
from streams.engine.records import Incoming, Output
from streams.engine.runner import StageRunner, fair_batch
from streams.settings import Settings
from tests.memory import MemoryConsumer, MemoryProducer
from topics import headers as h
from topics.catalog import StageSpec

SPEC = StageSpec("echo", ("echo.in",), ("echo.out",))


def backlog(partitions: int = 3, each: int = 50) -> MemoryConsumer:
    consumer = MemoryConsumer(partitions)
    consumer.subscribe(["echo.in"])
    for p in range(partitions):
        for n in range(each):
            consumer.add("echo.in", p, f"{p}-{n}".encode(), key=f"k{p}-{n}".encode())
    return consumer


async def test_a_poll_takes_an_even_share_of_every_partition() -> None:
    plain = backlog()
    first = await plain.getmany(max_records=30)
    assert {tp.partition: len(r) for tp, r in first.items()} == {0: 30}  # what aiokafka does

    fair = await fair_batch(backlog(), size=30, timeout_ms=0)  # type: ignore[arg-type]
    assert {tp.partition: len(r) for tp, r in fair.items()} == {0: 10, 1: 10, 2: 10}


async def test_commits_never_pass_a_record_that_is_not_done() -> None:
    tp = TopicPartition("t", 0)
    flight = InFlight()
    gates = [asyncio.Event() for _ in range(3)]

    def work(n: int):  # type: ignore[no-untyped-def]
        async def run() -> None:
            await gates[n].wait()

        return run

    for offset in range(3):
        flight.start(tp, offset, f"key-{offset}", work(offset))
    gates[2].set()
    gates[1].set()
    await asyncio.sleep(0)
    await flight.wait_any(within_s=1)
    while len(flight.tasks) > 1:
        await flight.wait_any(within_s=1)
    assert flight.take_committable() == {}  # offset 0 still in hand
    gates[0].set()
    await flight.drain()
    assert flight.take_committable() == {tp: 3}


async def test_one_key_s_records_run_one_after_another_in_offset_order() -> None:
    tp = TopicPartition("t", 0)
    flight = InFlight()
    seen: list[str] = []
    slow_may_end = asyncio.Event()

    async def slow() -> None:
        seen.append("slow starts")
        await slow_may_end.wait()
        seen.append("slow ends")

    async def fast() -> None:
        seen.append("fast runs")

    async def other() -> None:
        seen.append("other key runs")

    flight.start(tp, 0, b"email-1", slow)
    flight.start(tp, 1, b"email-1", fast)
    flight.start(tp, 2, b"email-2", other)
    while "other key runs" not in seen:  # noqa: ASYNC110 - the tasks set the condition
        await asyncio.sleep(0)
    assert "fast runs" not in seen  # waits for its email's earlier record
    slow_may_end.set()
    await flight.drain()
    assert seen.index("slow ends") < seen.index("fast runs")
    assert flight.take_committable() == {tp: 3}


async def run_memory(
    handler: object, consumer: MemoryConsumer, producer: MemoryProducer, outputs: int
) -> StageRunner:
    settings = Settings(retry_delays_s=(1.0, 2.0, 3.0, 4.0), tracing=False)
    runner = StageRunner(SPEC, handler, settings, producer, consumer=consumer)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(10):
            while len(producer.sent) < outputs:  # noqa: ASYNC110 - the runner sets it
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        await task
    return runner


async def test_the_runner_writes_every_output_then_commits_to_the_end() -> None:
    async def echo(record: Incoming) -> list[Output]:
        return [Output("echo.out", record.value, record.key or b"")]

    consumer, producer = backlog(each=20), MemoryProducer()
    runner = await run_memory(echo, consumer, producer, outputs=60)
    assert sorted(s.value or b"" for s in producer.to("echo.out")) == sorted(
        f"{p}-{n}".encode() for p in range(3) for n in range(20)
    )
    assert consumer.committed == {TopicPartition("echo.in", p): 20 for p in range(3)}
    assert runner.processed == 60


async def test_failures_go_to_the_next_tier_or_the_dead_letter_topic_and_nothing_escapes() -> None:
    async def fussy(record: Incoming) -> list[Output]:
        if record.value == b"down":
            raise Unavailable("model down")
        if record.value == b"bad":
            raise Rejected("never valid")
        if record.value == b"bug":
            raise ZeroDivisionError("a bug")
        return [Output("echo.out", record.value, record.key or b"")]

    consumer = MemoryConsumer(1)
    consumer.subscribe(["echo.in"])
    for value in (b"down", b"bad", b"bug", b"fine"):
        consumer.add("echo.in", 0, value, key=value)
    producer = MemoryProducer()
    await run_memory(fussy, consumer, producer, outputs=4)
    where = {s.value: s for s in producer.sent}
    assert where[b"down"].topic == "echo.retry.1"
    assert h.get(where[b"down"].headers, h.RETRY_ATTEMPT) == "1"
    assert where[b"bad"].topic == "echo.dlq"
    assert h.get(where[b"bad"].headers, h.ERROR_CLASS) == "Rejected"
    assert where[b"bug"].topic == "echo.retry.1"  # not ours: may be transient
    assert where[b"fine"].topic == "echo.out"
    assert consumer.committed == {TopicPartition("echo.in", 0): 4}


@pytest.mark.parametrize("tiers", [1, 3, 4])
async def test_the_retry_runner_reads_one_topic_per_delay(tiers: int) -> None:
    settings = Settings(retry_delays_s=(0.1,) * tiers)
    runner = StageRunner(SPEC, None, settings, MemoryProducer(), retries=True)  # type: ignore[arg-type]
    assert runner.inputs == tuple(f"echo.retry.{n}" for n in range(1, tiers + 1))


async def test_the_last_tier_s_failure_is_a_dead_letter() -> None:
    async def down(record: Incoming) -> list[Output]:
        raise Unavailable("still down")

    consumer = MemoryConsumer(1)
    consumer.subscribe(["echo.retry.4"])
    headers = [
        (h.RETRY_ATTEMPT, b"4"),
        (h.RETRY_NOT_BEFORE, b"0"),
        (h.ORIGIN_TOPIC, b"echo.in"),
        (h.ORIGIN_PARTITION, b"0"),
        (h.ORIGIN_OFFSET, b"7"),
        (h.ORIGIN_TIMESTAMP, b"0"),
    ]
    consumer.add("echo.retry.4", 0, b"v", key=b"k", headers=headers)
    producer = MemoryProducer()
    settings = Settings(retry_delays_s=(0.1,) * 4, tracing=False)
    runner = StageRunner(SPEC, down, settings, producer, retries=True, consumer=consumer)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(10):
        while not producer.sent:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    (dead,) = producer.sent
    assert dead.topic == "echo.dlq"
    assert h.get(dead.headers, h.RETRY_ATTEMPT) == "4"
    assert h.get(dead.headers, h.ORIGIN_OFFSET) == "7"
