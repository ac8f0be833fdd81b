"""Micro-batching: calls of one turn go to the model together; a bad input fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streams.models.batch import MicroBatch


def square_all(batches: list[list[int]]) -> MicroBatch[int, int]:
    def many(xs: Sequence[int]) -> list[int]:
        batches.append(list(xs))
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return [x * x for x in xs]

    return MicroBatch(many)


async def test_calls_of_one_turn_are_one_model_call_and_each_gets_its_answer() -> None:
    batches: list[list[int]] = []
    batch = square_all(batches)
    assert await asyncio.gather(*(batch(x) for x in range(10))) == [x * x for x in range(10)]
    assert batches == [list(range(10))]
    assert await batch(12) == 144  # a later turn: a batch of its own
    assert batches[-1] == [12]


async def test_tasks_started_together_share_a_batch() -> None:
    batches: list[list[int]] = []
    batch = square_all(batches)

    async def handler(x: int) -> int:
        await asyncio.sleep(0)  # work before the model call, as a stage does
        return await batch(x) + 1

    tasks = [asyncio.create_task(handler(x)) for x in range(5)]
    assert await asyncio.gather(*tasks) == [x * x + 1 for x in range(5)]
    assert batches == [[0, 1, 2, 3, 4]]


async def test_an_input_the_model_cannot_take_fails_alone() -> None:
    batches: list[list[int]] = []
    batch = square_all(batches)
    results = await asyncio.gather(batch(2), batch(-1), batch(3), return_exceptions=True)
    assert (results[0], results[2]) == (4, 9)
    assert isinstance(results[1], ValueError)
    assert batches[0] == [2, -1, 3]  # tried together first, then one by one
    assert sorted(map(tuple, batches[1:])) == [(-1,), (2,), (3,)]


async def test_a_wrong_number_of_answers_is_an_error_not_a_mix_up() -> None:
    batch: MicroBatch[int, int] = MicroBatch(lambda xs: [])
    with pytest.raises(RuntimeError, match="0 answers to 1 inputs"):
        await asyncio.gather(batch(1), batch(2))
