"""The engine without a broker: the in-flight tracker, and the real runner on an
in-memory link."""

from __future__ import annotations

import asyncio
import time

import pytest

from processors.errors import Rejected, Unavailable
from streams.engine import runner as runner_module
from streams.engine.inflight import InFlight
from streams.engine.records import Incoming, Output, TopicPartition
from streams.engine.runner import StageRunner
from streams.settings import Settings
from tests.memory import MemoryLink
from topics import headers as h
from topics.catalog import StageSpec

SPEC = StageSpec("echo", ("echo.in",), ("echo.out",))


def backlog(partitions: int = 3, each: int = 50) -> MemoryLink:
    link = MemoryLink(partitions)
    for p in range(partitions):
        for n in range(each):
            link.add("echo.in", p, f"{p}-{n}".encode(), key=f"k{p}-{n}".encode())
    return link


async def test_commits_never_pass_a_record_that_is_not_done() -> None:
    tp = TopicPartition("t", 0)
    flight = InFlight()
    gates = [asyncio.Event() for _ in range(3)]

    def work(n: int):  # type: ignore[no-untyped-def]
        async def run() -> list[Output]:
            await gates[n].wait()
            return [Output("out", str(n).encode(), b"k")]

        return run

    for offset in range(3):
        flight.start(tp, offset, f"key-{offset}", work(offset))
    for n in (2, 1):  # finish out of order
        gates[n].set()
        while len(flight.tasks) > n:
            await flight.wait_any(within_s=1)
    assert flight.take_committable() == ({}, [])  # offset 0 still in hand: nothing out
    gates[0].set()
    await flight.drain()
    offsets, outputs = flight.take_committable()
    assert offsets == {tp: 3}
    assert [o.value for o in outputs] == [b"2", b"1", b"0"]  # in the order they finished


async def test_one_key_s_records_run_one_after_another_in_offset_order() -> None:
    tp = TopicPartition("t", 0)
    flight = InFlight()
    seen: list[str] = []
    slow_may_end = asyncio.Event()

    async def slow() -> list[Output]:
        seen.append("slow starts")
        await slow_may_end.wait()
        seen.append("slow ends")
        return []

    async def fast() -> list[Output]:
        seen.append("fast runs")
        return []

    async def other() -> list[Output]:
        seen.append("other key runs")
        return []

    flight.start(tp, 0, b"email-1", slow)
    flight.start(tp, 1, b"email-1", fast)
    flight.start(tp, 2, b"email-2", other)
    while "other key runs" not in seen:  # noqa: ASYNC110 - the tasks set the condition
        await asyncio.sleep(0)
    assert "fast runs" not in seen  # waits for its email's earlier record
    slow_may_end.set()
    await flight.drain()
    assert seen.index("slow ends") < seen.index("fast runs")
    assert flight.take_committable() == ({tp: 3}, [])


def start(
    handler: object, link: MemoryLink, settings: Settings
) -> tuple[StageRunner, asyncio.Event, asyncio.Task[None]]:
    """The real runner on ``link``, running; set the event and await the task to stop it."""
    runner = StageRunner(SPEC, handler, settings, link=link)  # type: ignore[arg-type]
    stop = asyncio.Event()
    return runner, stop, asyncio.create_task(runner.run(stop))


async def run_memory(handler: object, link: MemoryLink, outputs: int) -> StageRunner:
    settings = Settings(retry_delays_s=(1.0, 2.0, 3.0, 4.0), tracing=False)
    runner, stop, task = start(handler, link, settings)
    try:
        async with asyncio.timeout(10):
            while len(link.sent) < outputs:  # noqa: ASYNC110 - the runner sets it
                await asyncio.sleep(0.005)
    finally:
        stop.set()
        await task
    return runner


async def echo(record: Incoming) -> list[Output]:
    return [Output("echo.out", record.value, record.key or b"")]


async def test_the_runner_writes_every_output_then_commits_to_the_end() -> None:
    link = backlog(each=20)
    runner = await run_memory(echo, link, outputs=60)
    assert sorted(s.value or b"" for s in link.to("echo.out")) == sorted(
        f"{p}-{n}".encode() for p in range(3) for n in range(20)
    )
    assert link.committed == {TopicPartition("echo.in", p): 20 for p in range(3)}
    assert runner.processed == 60
    assert link.closed


async def test_a_record_s_outputs_go_out_only_with_its_offset() -> None:
    """Record 0 is slow: record 1's output waits for it, and both go out in the commit
    that moves the partition past them, never before."""
    slow_may_end = asyncio.Event()

    async def handler(record: Incoming) -> list[Output]:
        if record.value == b"slow":
            await slow_may_end.wait()
        return [Output("echo.out", record.value, record.key or b"")]

    link = MemoryLink(1)
    link.add("echo.in", 0, b"slow", key=b"a")
    link.add("echo.in", 0, b"fast", key=b"b")
    runner, stop, task = start(handler, link, Settings(tracing=False, commit_interval_ms=1))
    async with asyncio.timeout(10):
        while runner.processed < 1:  # noqa: ASYNC110 - the runner sets it
            await asyncio.sleep(0.005)
    for _ in range(5):  # several commit intervals pass
        await asyncio.sleep(0.01)
    assert link.sent == []  # "fast" is done, but its offset cannot be committed yet
    slow_may_end.set()
    async with asyncio.timeout(10):
        while len(link.sent) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    ((outputs, offsets),) = [c for c in link.commits if c[0]]
    assert [o.value for o in outputs] == [b"fast", b"slow"]
    assert offsets == {TopicPartition("echo.in", 0): 2}


async def test_a_waiting_poll_never_holds_a_finished_record_s_outputs_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Polls wait for records side by side with the work and the commits: a record that
    finishes while a poll waits (here for up to 30 s) goes out with the next commit, not
    after the poll."""
    monkeypatch.setattr(runner_module, "POLL_S", 30.0)
    may_end = asyncio.Event()

    async def handler(record: Incoming) -> list[Output]:
        await may_end.wait()
        return [Output("echo.out", record.value, record.key or b"")]

    link = MemoryLink(1)
    link.add("echo.in", 0, b"one", key=b"a")
    runner, stop, task = start(handler, link, Settings(tracing=False, commit_interval_ms=30))
    async with asyncio.timeout(10):
        while not (runner.flight.tasks and link.polling):  # noqa: ASYNC110 - the runner
            await asyncio.sleep(0.005)
        may_end.set()
        while not link.sent:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    assert [s.value for s in link.sent] == [b"one"]
    assert link.polling_at_commit[0] == 1  # written while a poll waited
    assert max(link.waits) == 30.0


async def test_a_commit_the_group_refuses_puts_the_stage_back_where_it_committed() -> None:
    """A transaction refused because the group moved on (a zombie): nothing of it is
    written; the stage's state is rebuilt from what was committed and every record is
    read again, so each output is written once."""
    link = backlog(partitions=1, each=10)
    link.lose_next = True
    calls: list[str] = []

    async def assign(parts: set[TopicPartition]) -> None:
        calls.append("restore")

    async def revoke(parts: set[TopicPartition]) -> None:
        calls.append("forget")

    settings = Settings(tracing=False)
    runner = StageRunner(SPEC, echo, settings, link=link)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, on_assign=assign, on_revoke=revoke))
    async with asyncio.timeout(10):
        while len(link.sent) < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    assert runner.rewinds == 1
    assert link.rewound == 1
    assert calls[:3] == ["restore", "forget", "restore"]
    assert sorted(s.value or b"" for s in link.sent) == sorted(f"0-{n}".encode() for n in range(10))
    assert runner.processed >= 20  # every record twice: once lost, once committed


async def test_emitted_outputs_wait_for_records_that_finished_before_them() -> None:
    tp = TopicPartition("t", 0)
    flight = InFlight()
    gate = asyncio.Event()

    async def blocked() -> list[Output]:
        await gate.wait()
        return [Output("out", b"first", b"k")]

    async def quick() -> list[Output]:
        return [Output("out", b"put", b"k")]

    flight.start(tp, 0, b"a", blocked)
    flight.start(tp, 1, b"b", quick)
    while len(flight.tasks) > 1:
        await flight.wait_any(within_s=1)
    flight.emit([Output("out", b"tombstone", b"k")])
    assert flight.take_committable() == ({}, [])  # the tombstone may not pass the put
    gate.set()
    await flight.drain()
    offsets, outputs = flight.take_committable()
    assert offsets == {tp: 2}
    assert [o.value for o in outputs] == [b"put", b"tombstone", b"first"]


async def test_failures_go_to_the_next_tier_or_the_dead_letter_topic_and_nothing_escapes() -> None:
    async def fussy(record: Incoming) -> list[Output]:
        if record.value == b"down":
            raise Unavailable("model down")
        if record.value == b"bad":
            raise Rejected("never valid")
        if record.value == b"bug":
            raise ZeroDivisionError("a bug")
        return [Output("echo.out", record.value, record.key or b"")]

    link = MemoryLink(1)
    for value in (b"down", b"bad", b"bug", b"fine"):
        link.add("echo.in", 0, value, key=value)
    await run_memory(fussy, link, outputs=4)
    where = {s.value: s for s in link.sent}
    assert where[b"down"].topic == "echo.retry.1"
    assert h.get(where[b"down"].headers, h.RETRY_ATTEMPT) == "1"
    assert where[b"bad"].topic == "echo.dlq"
    assert h.get(where[b"bad"].headers, h.ERROR_CLASS) == "Rejected"
    assert where[b"bug"].topic == "echo.retry.1"  # not ours: may be transient
    assert where[b"fine"].topic == "echo.out"
    assert link.committed == {TopicPartition("echo.in", 0): 4}


@pytest.mark.parametrize("tiers", [1, 3, 4])
async def test_the_retry_runner_reads_one_topic_per_delay(tiers: int) -> None:
    settings = Settings(retry_delays_s=(0.1,) * tiers)
    runner = StageRunner(SPEC, None, settings, retries=True)  # type: ignore[arg-type]
    assert runner.inputs == tuple(f"echo.retry.{n}" for n in range(1, tiers + 1))


async def test_the_last_tier_s_failure_is_a_dead_letter() -> None:
    async def down(record: Incoming) -> list[Output]:
        raise Unavailable("still down")

    link = MemoryLink(1)
    headers = [
        (h.RETRY_ATTEMPT, b"4"),
        (h.RETRY_NOT_BEFORE, b"0"),
        (h.ORIGIN_TOPIC, b"echo.in"),
        (h.ORIGIN_PARTITION, b"0"),
        (h.ORIGIN_OFFSET, b"7"),
        (h.ORIGIN_TIMESTAMP, b"0"),
    ]
    link.add("echo.retry.4", 0, b"v", key=b"k", headers=headers)
    settings = Settings(retry_delays_s=(0.1,) * 4, tracing=False)
    runner = StageRunner(SPEC, down, settings, retries=True, link=link)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(10):
        while not link.sent:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    (dead,) = link.sent
    assert dead.topic == "echo.dlq"
    assert h.get(dead.headers, h.RETRY_ATTEMPT) == "4"
    assert h.get(dead.headers, h.ORIGIN_OFFSET) == "7"


async def test_a_retry_record_due_later_than_any_tier_sets_is_handled_now() -> None:
    """A not-before ten years ahead (anyone can produce to a retry topic) would have held
    its partition, and every record behind it, until then."""
    link = MemoryLink(1)
    ten_years = str(int((time.time() + 10 * 365 * 86400) * 1000)).encode()
    for n, not_before in enumerate((ten_years, b"0")):
        headers = [(h.RETRY_ATTEMPT, b"1"), (h.RETRY_NOT_BEFORE, not_before)]
        link.add("echo.retry.1", 0, f"v{n}".encode(), key=f"k{n}".encode(), headers=headers)
    settings = Settings(retry_delays_s=(0.2,), tracing=False)
    runner = StageRunner(SPEC, echo, settings, retries=True, link=link)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(10):
        while len(link.sent) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    assert [s.value for s in link.sent] == [b"v0", b"v1"]


async def test_a_record_with_a_forged_attempt_header_is_handled() -> None:
    """``int()`` of the header raised in the wrapper, before any failure routing."""
    link = MemoryLink(1)
    link.add("echo.in", 0, b"v", key=b"k", headers=[(h.RETRY_ATTEMPT, b"not a number")])
    runner = StageRunner(SPEC, echo, Settings(tracing=False), link=link)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(10):
        while not link.sent:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    assert [(s.topic, s.value) for s in link.sent] == [("echo.out", b"v")]


async def test_while_the_stage_is_put_back_nothing_new_is_taken_in() -> None:
    """A refused commit puts the stage back at its committed offsets; records read while
    that is under way (its hooks take time) are not handled: they are read again from
    there, so every output is written once."""
    link = backlog(partitions=1, each=30)
    link.lose_next = True

    async def slow_revoke(parts: set[TopicPartition]) -> None:
        for n in range(30, 40):  # more records come in meanwhile
            link.add("echo.in", 0, f"0-{n}".encode(), key=f"k0-{n}".encode())
            await asyncio.sleep(0.005)  # e.g. the join writing its table back

    settings = Settings(tracing=False)
    runner = StageRunner(SPEC, echo, settings, link=link)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop, on_revoke=slow_revoke))
    async with asyncio.timeout(10):
        while link.committed.get(TopicPartition("echo.in", 0)) != 40:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    await task
    assert runner.rewinds == 1
    values = [s.value for s in link.sent]
    assert sorted(values) == sorted(f"0-{n}".encode() for n in range(40))  # each once
