"""``mailroom replay``: re-publish a dead-letter topic to where each record failed, or any
topic to another, by offset or time range, with header filters, dry-run and a rate limit.

Built on confluent-kafka with auto-commit off: it reads a snapshot (up to the end offsets
seen at start) and commits nothing. Each record keeps its key, value and trace context;
the failure headers are removed (the stage tries it afresh) and ``mailroom.replay.id`` /
``mailroom.replay.count`` are added. The escalation decider drops a second outcome for a
message id, so replaying the same range twice produces no second reply.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import TopicPartition

from streams.engine.kafka import durable_producer, reader
from streams.errors import ReplayError
from streams.settings import Settings
from topics import headers as h

DROPPED_ON_REPLAY = h.FAILURE_HEADERS | {h.RETRY_ATTEMPT, h.FIRST_FAILED_AT}


@dataclass
class ReplayPlan:
    source: str
    to: str | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    where: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    rate: float | None = None


@dataclass
class ReplayResult:
    replay_id: str
    read: int = 0
    matched: int = 0
    sent: Counter[str] = field(default_factory=Counter)

    def describe(self, dry_run: bool) -> str:
        verb = "would send" if dry_run else "sent"
        lines = [f"replay {self.replay_id}: read {self.read}, matched {self.matched}"]
        lines += [f"  {verb} {n} to {topic}" for topic, n in sorted(self.sent.items())]
        return "\n".join(lines)


#: the largest offset or time Kafka takes (a signed 64-bit integer)
KAFKA_MAX = 2**63 - 1


def parse_time(text: str) -> int:
    """Epoch millis, or an ISO-8601 time (UTC when no zone is given), from 1970 on:
    Kafka reads a negative time as "latest" or "earliest", not as a time."""
    if re.fullmatch(r"[0-9]{1,19}", text.strip()):
        millis = int(text)
    else:
        try:
            parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ReplayError(
                f"{text[:40]!r} is neither epoch millis nor an ISO-8601 time"
            ) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        millis = int(parsed.timestamp() * 1000)
    if not 0 <= millis <= KAFKA_MAX:
        raise ReplayError(f"{text[:40]!r} is before 1970 or past what Kafka can seek to")
    return millis


def parse_where(items: list[str]) -> dict[str, str]:
    where = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ReplayError(f"--where takes HEADER=VALUE, got {item!r}")
        where[name.strip()] = value
    return where


def replay(
    settings: Settings, plan: ReplayPlan, progress: Callable[[int, int], None] | None = None
) -> ReplayResult:
    if (plan.from_offset is not None or plan.to_offset is not None) and (
        plan.since_ms is not None or plan.until_ms is not None
    ):
        raise ReplayError("choose an offset range or a time range, not both")
    for name, value in (("--from-offset", plan.from_offset), ("--to-offset", plan.to_offset)):
        if value is not None and not 0 <= value <= KAFKA_MAX:
            raise ReplayError(f"{name} {value} is not an offset (0 to {KAFKA_MAX})")
    for low, high, names in (
        (plan.from_offset, plan.to_offset, "--from-offset is past --to-offset"),
        (plan.since_ms, plan.until_ms, "--since is after --until"),
    ):
        if low is not None and high is not None and low > high:
            raise ReplayError(f"{names}: nothing would be replayed")
    source = settings.topic(plan.source)
    consumer = reader(settings)
    producer = None if plan.dry_run else durable_producer(settings)
    result = ReplayResult(replay_id=uuid.uuid4().hex[:12])
    try:
        metadata = consumer.list_topics(source, timeout=10)
        topic_md = metadata.topics.get(source)
        if topic_md is None or topic_md.error is not None:
            raise ReplayError(f"topic {source} does not exist")
        starts, ends = _bounds(consumer, source, list(topic_md.partitions), plan)
        todo = {p: end for p, end in ends.items() if end > starts[p]}
        total = sum(end - starts[p] for p, end in todo.items())
        if not todo:
            return result
        consumer.assign([TopicPartition(source, p, starts[p]) for p in todo])
        began = time.monotonic()
        while todo:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() or msg.partition() not in todo:
                    continue
                if msg.offset() >= todo[msg.partition()]:
                    continue  # past the range asked for
                result.read += 1
                headers = list(msg.headers() or ())
                if any(h.get(headers, k) != v for k, v in plan.where.items()):
                    continue
                destination = (plan.to and settings.topic(plan.to)) or h.get(
                    headers, h.ORIGIN_TOPIC
                )
                if not destination:
                    raise ReplayError(
                        f"record {msg.partition()}@{msg.offset()} has no "
                        f"{h.ORIGIN_TOPIC} header; say where with --to"
                    )
                result.matched += 1
                result.sent[destination] += 1
                if producer is not None:
                    if plan.rate:
                        wait = began + result.matched / plan.rate - time.monotonic()
                        if wait > 0:
                            producer.poll(wait)
                    producer.produce(
                        destination,
                        msg.value(),
                        key=msg.key(),
                        headers=replayed_headers(headers, result.replay_id),
                    )
                    producer.poll(0)
                if progress is not None:
                    progress(result.read, total)
            # Done with a partition when its position reaches the bound, not when a
            # record's offset does: transaction markers take offsets too.
            for tp in consumer.position([TopicPartition(source, p) for p in todo]):
                if tp.offset >= todo[tp.partition]:
                    todo.pop(tp.partition, None)
        if producer is not None and producer.flush(30):
            raise ReplayError("some replayed records were not acknowledged within 30s")
    finally:
        consumer.close()
    return result


def replayed_headers(headers: list[tuple[str, bytes]], replay_id: str) -> list[tuple[str, bytes]]:
    count = h.get_int(headers, h.REPLAY_COUNT, 0) + 1
    kept = [(k, v) for k, v in headers if k not in DROPPED_ON_REPLAY]
    return h.replace(kept, {h.REPLAY_ID: replay_id, h.REPLAY_COUNT: str(count)})


def _bounds(
    consumer: object, topic: str, partitions: list[int], plan: ReplayPlan
) -> tuple[dict[int, int], dict[int, int]]:
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(  # type: ignore[attr-defined]
            TopicPartition(topic, p), timeout=10
        )
        starts[p] = max(low, plan.from_offset) if plan.from_offset is not None else low
        ends[p] = min(high, plan.to_offset + 1) if plan.to_offset is not None else high
    for bound, mapping in ((plan.since_ms, starts), (plan.until_ms, ends)):
        if bound is None:
            continue
        found = consumer.offsets_for_times(  # type: ignore[attr-defined]
            [TopicPartition(topic, p, bound) for p in partitions], timeout=10
        )
        for tp in found:
            if tp.offset >= 0:
                mapping[tp.partition] = tp.offset
            elif mapping is starts:
                mapping[tp.partition] = ends[tp.partition]  # nothing that late
    return starts, ends
