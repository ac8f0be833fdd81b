"""Co-partitioned assignment: partition n of every topic a group reads goes to one member.

The triage join reads ``emails.classified`` and ``emails.scored`` in one group and must see
both halves of an email, which sit on the same partition number of the two topics; the
decider's terminal ledger reads back partition n of the outcome topics for the inputs it
owns. aiokafka's round-robin assignor deals the partitions of all topics out in one row,
so that holds only when the number of members divides the partition count. Here partition
numbers are dealt out instead: number n goes to the n-th member (sorted by member id,
modulo their count), with every topic's partition n, so 1 to 12 workers (or any number)
join correctly; members beyond the partition count stand by.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


class CoPartitionedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    name = "mailroom-copartitioned"
    version = 0

    @classmethod
    def assign(
        cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        ordered = sorted(members)
        topics = sorted({t for m in members.values() for t in m.subscription})
        owned: dict[str, dict[str, list[int]]] = collections.defaultdict(
            lambda: collections.defaultdict(list)
        )
        for topic in topics:
            readers = [m for m in ordered if topic in members[m].subscription]
            for number in sorted(cluster.partitions_for_topic(topic) or ()):
                owner = ordered[number % len(ordered)]
                if owner not in readers:  # mixed subscriptions (a rolling restart)
                    owner = readers[number % len(readers)]
                owned[owner][topic].append(number)
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version, sorted((t, sorted(p)) for t, p in owned[member].items()), b""
            )
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None
