"""A stage with slow models keeps several messages in hand, but never two of one email."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.engine.records import Handler, Incoming, Output, Rebalance
from streams.engine.records import TopicPartition as Partition
from streams.engine.runner import StageRunner
from streams.settings import Settings
from tests.kafka_helpers import consume_all, make_topics
from topics.catalog import StageSpec

pytestmark = pytest.mark.integration


async def run_until(
    settings: Settings,
    spec: StageSpec,
    model: Handler,
    done: asyncio.Event,
    on_assign: Rebalance | None = None,
) -> None:
    """Run one stage with ``model`` until ``done`` is set (60 s at most), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(StageRunner(spec, model, settings).run(stop, on_assign=on_assign))
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        stop.set()
        await task


async def run_stage(settings: Settings, expected: int) -> tuple[int, dict[str, list[int]]]:
    in_flight: set[bytes] = set()
    peak = 0
    order: dict[str, list[int]] = {}
    all_handled = asyncio.Event()

    async def slow_model(record: Incoming) -> list[Output]:
        nonlocal peak
        key = record.key or b""
        assert key not in in_flight, "two records of one email handled at once"
        in_flight.add(key)
        peak = max(peak, len(in_flight))
        await asyncio.sleep(0.05)  # the model's latency
        in_flight.discard(key)
        order.setdefault(key.decode(), []).append(int((record.value or b"0").decode()))
        if sum(map(len, order.values())) == expected:
            all_handled.set()
        return [Output("conc.out", record.value, record.key)]

    spec = StageSpec("conc", ("conc.in",), ("conc.out",))
    await run_until(settings, spec, slow_model, all_handled)
    return peak, order


def test_a_stage_overlaps_emails_up_to_its_limit_and_keeps_each_email_in_order(
    kafka: Settings,
) -> None:
    settings = kafka.model_copy(update={"stage_concurrency": 4})
    (topic,) = make_topics(settings, "conc.in", partitions=1)
    make_topics(settings, "conc.out", partitions=1)
    producer = Producer(settings.confluent_config(**{"acks": "all"}))
    # 10 emails, 3 records each (a retry, a revision...), interleaved in one partition.
    for step in range(3):
        for email in range(10):
            producer.produce(topic, str(step).encode(), f"email-{email}".encode())
    assert producer.flush(10) == 0

    peak, order = asyncio.run(run_stage(settings, 30))

    assert 1 < peak <= 4
    assert order == {f"email-{n}": [0, 1, 2] for n in range(10)}
    assert len(consume_all(settings, settings.topic("conc.out"), 30)) == 30


def test_a_backlog_is_worked_through_on_every_partition_at_once(kafka: Settings) -> None:
    """classify and urgency read the same backlog side by side and the join waits for both:
    if one stage drained partition 0 while the other drained partition 3, every half would
    wait minutes for its twin. So the records read are taken in a share of every
    partition at a time."""
    settings = kafka.model_copy(update={"stage_concurrency": 1})  # handled in poll order
    (topic,) = make_topics(settings, "backlog.in", partitions=6)
    make_topics(settings, "backlog.out", partitions=6)
    producer = Producer(settings.confluent_config(**{"acks": "all"}))
    for partition in range(6):
        for n in range(100):
            producer.produce(topic, b"x", f"p{partition}-{n}".encode(), partition=partition)
    assert producer.flush(10) == 0
    handled: list[int] = []
    all_handled = asyncio.Event()

    async def model(record: Incoming) -> list[Output]:
        handled.append(record.partition)
        if len(handled) == 600:
            all_handled.set()
        return []

    spec = StageSpec("backlog", ("backlog.in",), ("backlog.out",))
    asyncio.run(run_until(settings, spec, model, all_handled))

    first_poll = handled[:200]  # one poll's worth
    assert sorted(set(first_poll)) == list(range(6))
    assert max(first_poll.count(p) for p in range(6)) <= 40


def test_a_slow_email_holds_one_slot_and_the_commit_but_not_the_emails_behind_it(
    kafka: Settings,
) -> None:
    """A 2 s model call on one email must not stop the stage taking the next emails in;
    and the partition's committed offset must not pass the slow email until it is done,
    or a crash would lose it."""
    settings = kafka.model_copy(update={"stage_concurrency": 4})
    (topic,) = make_topics(settings, "slow.in", partitions=1)
    make_topics(settings, "slow.out", partitions=1)
    producer = Producer(settings.confluent_config(**{"acks": "all"}))
    slow_started, fast_done, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    fast: list[bytes] = []
    committed_while_slow: list[int | None] = []

    async def model(record: Incoming) -> list[Output]:
        if record.key == b"slow":
            slow_started.set()
            await asyncio.wait_for(release.wait(), 30)
        else:
            fast.append(record.key or b"")
            if len(fast) == 20:
                fast_done.set()
        return [Output("slow.out", record.value, record.key)]

    def committed_now(group: str) -> int | None:
        looker = Consumer(settings.confluent_config(**{"group.id": group}))
        try:
            (found,) = looker.committed([TopicPartition(topic, 0)], timeout=10)
            return found.offset if found.offset >= 0 else None
        finally:
            looker.close()

    async def committed(runner: StageRunner) -> int | None:
        return await asyncio.to_thread(committed_now, runner.group)

    async def run() -> int | None:
        spec = StageSpec("slow", ("slow.in",), ("slow.out",))
        stop = asyncio.Event()
        runner = StageRunner(spec, model, settings)
        task = asyncio.create_task(runner.run(stop))
        try:
            producer.produce(topic, b"0", b"slow")
            producer.flush(10)
            await asyncio.wait_for(slow_started.wait(), 60)
            for n in range(20):  # produced while the slow one is in hand
                producer.produce(topic, b"1", f"fast-{n}".encode())
            producer.flush(10)
            await asyncio.wait_for(fast_done.wait(), 20)
            await asyncio.sleep(settings.commit_interval_ms / 1000 * 3)  # commits are due
            committed_while_slow.append(await committed(runner))
            release.set()
            deadline = asyncio.get_running_loop().time() + 20
            while await committed(runner) != 21:
                assert asyncio.get_running_loop().time() < deadline, "never committed"
                await asyncio.sleep(0.1)
            return await committed(runner)
        finally:
            release.set()
            stop.set()
            await task

    final = asyncio.run(run())

    assert len(fast) == 20  # all taken in and handled while the slow email was in hand
    assert committed_while_slow[0] in (None, 0)  # not past the slow email at offset 0
    assert final == 21


def test_no_record_is_handled_while_a_newly_assigned_partition_restores_its_state(
    kafka: Settings,
) -> None:
    """The join reloads its waiting halves when partitions are assigned; a half handled
    meanwhile would miss its restored twin and wait until the join timeout. So nothing
    of the partitions is fetched before the stage's callback returns."""
    settings = kafka.model_copy(update={"stage_concurrency": 4})
    (topic,) = make_topics(settings, "assign.in", partitions=2)
    make_topics(settings, "assign.out", partitions=2)
    producer = Producer(settings.confluent_config(**{"acks": "all"}))
    for n in range(20):
        producer.produce(topic, b"x", f"email-{n}".encode())
    assert producer.flush(10) == 0
    handled: list[bytes] = []
    handled_while_restoring: list[int] = []
    all_handled = asyncio.Event()

    async def model(record: Incoming) -> list[Output]:
        handled.append(record.key or b"")
        if len(handled) == 20:
            all_handled.set()
        return []

    async def restore(assigned: set[Partition]) -> None:
        await asyncio.sleep(1.5)  # reading a changelog back takes a while
        handled_while_restoring.append(len(handled))

    spec = StageSpec("assign", ("assign.in",), ("assign.out",))
    asyncio.run(run_until(settings, spec, model, all_handled, on_assign=restore))

    assert handled_while_restoring == [0]
    assert sorted(handled) == sorted(f"email-{n}".encode() for n in range(20))
