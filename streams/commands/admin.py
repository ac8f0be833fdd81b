"""Topic administration from the catalog, with confluent-kafka's AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from streams.commands.broker import partition_offsets, partitions_not_ready
from streams.errors import TopicSetupError
from streams.settings import Settings
from topics.catalog import TopicSpec, all_topics


@dataclass
class CreateResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    #: existing topics whose partitions or replication differ from what is wanted
    differences: list[str] = field(default_factory=list)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.confluent_config())


def create_topics(
    settings: Settings, specs: tuple[TopicSpec, ...] | None = None, timeout_s: float = 30.0
) -> CreateResult:
    """Create every catalog topic that does not exist yet. Safe to run any number of times."""
    specs = specs or all_topics(settings.retry_tiers)
    admin = admin_client(settings)
    present = admin.list_topics(timeout=timeout_s).topics
    result = CreateResult()
    wanted = []
    replicas = settings.replication_factor or broker_replication(admin, timeout_s)
    for spec in specs:
        name = settings.topic(spec.name)
        if name in present:
            result.existing.append(name)
            result.differences.extend(differences(present[name], spec.partitions, replicas))
            continue
        config = (
            {"cleanup.policy": "compact"}
            if spec.compacted
            else {"retention.ms": str(spec.retention_ms)}
        )
        if settings.min_insync_replicas:
            config["min.insync.replicas"] = str(settings.min_insync_replicas)
        wanted.append(
            NewTopic(
                name,
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor or -1,  # -1: the broker's
                config=config,
            )
        )
    if not wanted:
        return result
    futures = admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == error.TOPIC_ALREADY_EXISTS:  # a concurrent create won
                result.existing.append(name)
                continue
            raise TopicSetupError(f"creating topic {name} failed: {error.str()}") from exc
        result.created.append(name)
    wait_led(admin, result.created, timeout_s)
    return result


def broker_replication(admin: AdminClient, timeout_s: float) -> int:
    """The cluster's ``default.replication.factor`` (what ``-1`` at creation means)."""
    metadata = admin.list_topics(timeout=timeout_s)
    broker = str(min(metadata.brokers))
    resource = ConfigResource(ResourceType.BROKER, broker)
    configs = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result()
    return int(configs["default.replication.factor"].value)


def differences(topic: Any, partitions: int, replicas: int) -> list[str]:
    """How an existing topic differs from what the catalog and settings want."""
    found = []
    name = topic.topic
    if len(topic.partitions) != partitions:
        found.append(
            f"{name}: {len(topic.partitions)} partitions, the catalog wants {partitions} "
            "(add partitions with kafka-topics --alter, keys will move, or recreate it)"
        )
    have = {len(p.replicas) for p in topic.partitions.values()}
    if have and have != {replicas}:
        shown = "/".join(str(n) for n in sorted(have))
        found.append(f"{name}: replication {shown}, wanted {replicas}")
    return found


def wait_led(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Wait until every partition of ``names`` serves requests (new topics take a moment)."""
    deadline = time.monotonic() + timeout_s
    while (problem := partitions_not_ready(admin, names, timeout_s=5.0)) is not None:
        if time.monotonic() > deadline:
            raise TopicSetupError(f"new topics are not ready after {timeout_s:.0f}s: {problem}")
        time.sleep(0.1)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    records: int
    in_catalog: bool
    replication: int = 0
    differs: str = ""  # how it differs from the catalog and settings, if it does


def list_topics(settings: Settings, timeout_s: float = 10.0) -> list[TopicInfo]:
    """Topics of this deployment (its prefix), with partition and record counts."""
    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=timeout_s)
    catalog = {settings.topic(t.name): t for t in all_topics(settings.retry_tiers)}
    prefix = settings.topic_prefix
    low = partition_offsets(
        admin, metadata, OffsetSpec.earliest(), timeout_s=timeout_s, prefix=prefix
    )
    high = partition_offsets(
        admin, metadata, OffsetSpec.latest(), timeout_s=timeout_s, prefix=prefix
    )
    replicas = settings.replication_factor or broker_replication(admin, timeout_s)
    infos = []
    for name in sorted(metadata.topics):
        if name.startswith("__") or not name.startswith(prefix):
            continue
        topic = metadata.topics[name]
        parts = topic.partitions
        records = sum(max(0, high[(name, p)] - low[(name, p)]) for p in parts)
        spec = catalog.get(name)
        differs = (
            "; ".join(d.split(": ", 1)[1] for d in differences(topic, spec.partitions, replicas))
            if spec is not None
            else ""
        )
        replication = max((len(p.replicas) for p in parts.values()), default=0)
        infos.append(TopicInfo(name, len(parts), records, spec is not None, replication, differs))
    return infos


def groups_not_ready(
    settings: Settings,
    stages: Iterable[str],
    timeout_s: float = 10.0,
    admin: AdminClient | None = None,
) -> list[str]:
    """The stage consumer groups (main and retry) that are not yet stable with every
    partition of their inputs assigned to a member; empty when the stages are running."""
    from topics import catalog

    admin = admin or admin_client(settings)
    wanted: dict[str, set[tuple[str, int]]] = {}
    metadata = admin.list_topics(timeout=timeout_s)
    for name in stages:
        spec = catalog.stage(name)
        for group, inputs in (
            (f"{settings.app_id}.{spec.name}", spec.inputs),
            (
                f"{settings.app_id}.{spec.name}.retry",
                spec.retry_topics(settings.retry_tiers),
            ),
        ):
            parts: set[tuple[str, int]] = set()
            for topic in inputs:
                topic_md = metadata.topics.get(settings.topic(topic))
                if topic_md is not None:
                    parts |= {(settings.topic(topic), p) for p in topic_md.partitions}
            wanted[group] = parts
    futures = admin.describe_consumer_groups(list(wanted), request_timeout=timeout_s)
    waiting = []
    for group, future in futures.items():
        try:
            description = future.result()
        except KafkaException:
            waiting.append(group)
            continue
        assigned = {
            (tp.topic, tp.partition)
            for member in description.members
            for tp in member.assignment.topic_partitions
        }
        if description.state != ConsumerGroupState.STABLE or not wanted[group] <= assigned:
            waiting.append(group)
    return sorted(waiting)
