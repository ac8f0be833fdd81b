"""Partition n of every topic a group reads goes to one member, for any number of members."""

from __future__ import annotations

from collections import Counter

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streams.engine.assignor import CoPartitionedAssignor

TOPICS = ("emails.classified", "emails.scored")


class Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.partitions.get(topic)
        return None if count is None else set(range(count))


def assign(
    members: dict[str, tuple[str, ...]], partitions: int = 6
) -> dict[str, set[tuple[str, int]]]:
    metadata = {m: ConsumerProtocolMemberMetadata(0, list(t), b"") for m, t in members.items()}
    cluster = Cluster({t: partitions for t in TOPICS})
    result = CoPartitionedAssignor.assign(cluster, metadata)
    return {
        member: {(topic, p) for topic, numbers in a.assignment for p in numbers}
        for member, a in result.items()
    }


@pytest.mark.parametrize("count", range(1, 13))
def test_both_halves_of_every_partition_go_to_one_worker_with_any_number_of_workers(
    count: int,
) -> None:
    owned = assign({f"worker-{n:02d}": TOPICS for n in range(count)})
    owners = {(t, p): m for m, parts in owned.items() for t, p in parts}
    assert len(owners) == 12  # every partition of both topics, once
    for number in range(6):
        assert owners[(TOPICS[0], number)] == owners[(TOPICS[1], number)]
    per_member = Counter(m for (_, _), m in owners.items())
    busy = [per_member.get(m, 0) for m in owned]
    assert max(busy) - min(busy) <= 2  # partition numbers dealt out evenly (2 topics each)
    assert sum(1 for b in busy if b) == min(count, 6)


def test_a_member_not_subscribed_to_a_topic_gets_none_of_it() -> None:
    owned = assign({"a": TOPICS, "b": (TOPICS[0],)})
    assert all(topic == TOPICS[0] for topic, _ in owned["b"])
    assert {p for t, p in owned["a"] if t == TOPICS[1]} == set(range(6))
