"""``mailroom audit``: the ledger invariant, checked against the topics themselves.

Every message id seen on ``emails.inbound`` must be in exactly one terminal topic
(responses, escalations, emails.ignored, or a dead-letter topic).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from streams.clients import reader
from streams.settings import Settings
from topics import catalog
from topics.codec import InboundCodec
from topics.errors import CodecError


@dataclass
class AuditReport:
    inbound: int = 0
    terminal: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"inbound message ids: {self.inbound}"]
        lines += [f"  {topic}: {count}" for topic, count in sorted(self.terminal.items()) if count]
        lines.append(f"missing (in no terminal topic): {len(self.missing)}")
        lines += [f"  {mid}" for mid in self.missing[:20]]
        lines.append(f"in more than one terminal topic: {len(self.duplicated)}")
        lines += [f"  {mid}: {', '.join(t)}" for mid, t in list(self.duplicated.items())[:20]]
        return "\n".join(lines)


def read_keys(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
    """(key, value, timestamp) of every record now in ``topic``, up to its end offsets."""
    consumer = reader(settings)
    name = settings.topic(topic)
    try:
        metadata = consumer.list_topics(name, timeout=10)
        parts = list(metadata.topics[name].partitions)
        ends = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(name, p, 0) for p in ends])
        out = []
        while ends:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
                out.append((msg.key(), msg.value(), msg.timestamp()[1]))
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        return out
    finally:
        consumer.close()


def inbound_ids(settings: Settings) -> list[str]:
    codec = InboundCodec()
    ids = []
    for key, value, timestamp in read_keys(settings, catalog.INBOUND):
        try:
            ids.append(codec.decode_inbound(value, key=key, timestamp_ms=timestamp)["message_id"])
        except CodecError:
            # Undecodable: its dead letter keeps the same key (or none) - count by key.
            ids.append((key or b"").decode("utf-8", errors="replace"))
    return ids


def run_audit(settings: Settings) -> AuditReport:
    report = AuditReport()
    ids = inbound_ids(settings)
    report.inbound = len(set(ids))
    where: dict[str, list[str]] = defaultdict(list)
    for topic in catalog.terminal_topics():
        keys = {
            (k or b"").decode("utf-8", errors="replace") for k, _, _ in read_keys(settings, topic)
        }
        report.terminal[topic] = len(keys)
        for key in keys:
            where[key].append(topic)
    for mid in dict.fromkeys(ids):
        found = where.get(mid, [])
        if not found:
            report.missing.append(mid)
        elif len(found) > 1:
            report.duplicated[mid] = found
    return report
