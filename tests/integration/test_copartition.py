"""Partition n of both join inputs on one worker, for any number of workers: the stage
consumers' own configuration, on the broker, with 3, 4 and 5 members."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer

from streams.engine.kafka import consumer_config
from streams.settings import Settings
from tests.kafka_helpers import make_topics, unique

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("members", [3, 4, 5])
def test_every_member_owns_the_same_partition_numbers_of_both_inputs(
    kafka: Settings, members: int
) -> None:
    classified, scored = make_topics(kafka, "classified", "scored", partitions=6)
    group = unique("join")
    consumers = [Consumer(consumer_config(kafka, group, f"member-{n}")) for n in range(members)]
    try:
        for consumer in consumers:
            consumer.subscribe([classified, scored])
        deadline = time.monotonic() + 60
        while True:
            for consumer in consumers:
                consumer.poll(0.05)
            owned = [{(tp.topic, tp.partition) for tp in c.assignment()} for c in consumers]
            if sum(map(len, owned)) == 12 and all(owned):
                break
            assert time.monotonic() < deadline, f"not all 12 partitions assigned: {owned}"
        for mine in owned:
            left = {p for t, p in mine if t == classified}
            right = {p for t, p in mine if t == scored}
            assert left == right  # this member joins both halves of its partitions
        numbers = sorted(p for mine in owned for t, p in mine if t == classified)
        assert numbers == list(range(6))
    finally:
        for consumer in consumers:
            consumer.close()
