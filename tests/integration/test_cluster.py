"""A local 3-node KRaft cluster: topics replicated as the settings say, differences from
the catalog reported, and a node lost without losing a write."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from streams.commands.admin import create_topics, list_topics
from streams.commands.cluster import EmbeddedCluster, found_nodes
from streams.settings import Settings
from tests.kafka_helpers import free_port_block, unique, wait_for
from topics import catalog

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    first = free_port_block(6)
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("cluster"),
        broker_port=first,
        controller_port=first + 1,
        broker_heap="384m",
        broker_start_timeout_s=120,
    )
    running = EmbeddedCluster(settings, 3)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def settings_for(cluster: EmbeddedCluster, **extra: object) -> Settings:
    base = cluster.nodes[0].settings
    return base.model_copy(update={"bootstrap_servers": cluster.bootstrap_servers, **extra})


SPECS = tuple(catalog.topic(name) for name in (catalog.INBOUND, catalog.RESPONSES))


def test_topics_are_created_with_the_replication_the_settings_ask_for(
    cluster: EmbeddedCluster,
) -> None:
    assert [s.running for s in cluster.status()] == [True, True, True]
    settings = settings_for(
        cluster, topic_prefix=f"{unique()}.", replication_factor=3, min_insync_replicas=2
    )
    created = create_topics(settings, SPECS)
    assert len(created.created) == 2
    assert created.differences == []
    listed = {i.name: i for i in list_topics(settings)}
    inbound = listed[settings.topic(catalog.INBOUND)]
    assert (inbound.partitions, inbound.replication, inbound.differs) == (6, 3, "")
    # Asked again for 2 replicas, the existing topics are reported, not changed.
    again = create_topics(settings.model_copy(update={"replication_factor": 2}), SPECS)
    assert again.created == []
    assert again.differences == [
        f"{settings.topic(s.name)}: replication 3, wanted 2" for s in SPECS
    ]


def test_a_node_killed_loses_no_acknowledged_write(cluster: EmbeddedCluster) -> None:
    settings = settings_for(cluster, topic_prefix=f"{unique()}.")
    create_topics(settings, SPECS)  # the cluster's default: 3 replicas, min.insync 2
    topic = settings.topic(catalog.INBOUND)
    victim = cluster.nodes[2]
    pid = victim.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: victim.pid() is None, timeout_s=30, what="the node is gone")
    producer = Producer(settings.confluent_config(**{"acks": "all", "enable.idempotence": True}))
    delivered: list[str] = []
    for n in range(20):
        producer.produce(
            topic,
            f"v{n}".encode(),
            key=f"k{n}".encode(),
            on_delivery=lambda err, msg: delivered.append((err and str(err)) or "ok"),
        )
    producer.flush(60)
    assert delivered == ["ok"] * 20
    cluster.start()  # the killed node comes back and catches up
    assert [s.running for s in cluster.status()] == [True, True, True]
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": unique(), "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    consumer.subscribe([topic])
    seen: set[bytes] = set()

    def read_all() -> bool:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            seen.add(msg.value())
        return len(seen) == 20

    try:
        wait_for(read_all, timeout_s=60, what="every acknowledged record")
    finally:
        consumer.close()


def test_status_and_stop_find_every_node_of_the_data_dir(cluster: EmbeddedCluster) -> None:
    found = found_nodes(cluster.nodes[0].settings)
    assert [n.home.name for n in found] == ["kafka-1", "kafka-2", "kafka-3"]
    assert all(n.status().running for n in found)
    assert [n.port for n in found] == [n.port for n in cluster.nodes]


def test_a_single_node_data_dir_is_found_as_before(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (only,) = found_nodes(Settings(data_dir=tmp_path))
    assert only.home == (tmp_path / "kafka").resolve()
