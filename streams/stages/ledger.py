"""The terminal stage's memory: which message ids already have their one outcome.

Responses and escalations are keyed by message id, with as many partitions as the
escalation decider's inputs, so the ids of partition ``p`` of those topics are exactly the
ones this worker can see again on its partition ``p``. They are read back when a partition
is assigned; a second outcome for a known id (a redelivery after a crash, a replay run
twice) is dropped, so a customer never gets two replies.
"""

from __future__ import annotations

import logging

from aiokafka import TopicPartition

from streams.engine.runner import read_to_end
from streams.settings import Settings
from topics import catalog

log = logging.getLogger("mailroom.ledger")


class TerminalLedger:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.done: dict[str, int] = {}  # message id -> partition
        self.dropped = 0

    def seen(self, message_id: str) -> bool:
        return message_id in self.done

    def add(self, message_id: str, partition: int) -> None:
        self.done[message_id] = partition

    async def restore(self, assigned: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in assigned}
        for topic in (catalog.RESPONSES, catalog.ESCALATIONS):
            for record in await read_to_end(self.settings, topic, numbers):
                if record.key:
                    self.done[record.key.decode("utf-8", errors="replace")] = record.partition
        log.info("terminal ledger knows %d message ids", len(self.done))

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in revoked}
        self.done = {m: p for m, p in self.done.items() if p not in numbers}
