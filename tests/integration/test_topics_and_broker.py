"""The topic contract on the real broker, and the broker's own lifecycle."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.commands.admin import create_topics, list_topics
from streams.commands.broker import EmbeddedBroker
from streams.errors import BrokerError
from streams.settings import Settings
from tests.cli import run_cli as cli
from tests.kafka_helpers import consume_all, free_port
from topics.catalog import all_topics

pytestmark = pytest.mark.integration


def test_topics_create_twice_is_a_no_op(kafka: Settings) -> None:
    first = create_topics(kafka)
    assert len(first.created) == len(all_topics(kafka.retry_tiers))
    assert first.existing == []
    second = create_topics(kafka)
    assert second.created == []
    assert sorted(second.existing) == sorted(first.created)
    listed = {t.name: t for t in list_topics(kafka)}
    assert set(listed) == {kafka.topic(t.name) for t in all_topics(kafka.retry_tiers)}
    assert listed[kafka.topic("classify.dlq")].partitions == 6


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MAILROOM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MAILROOM_TOPIC_PREFIX": settings.topic_prefix,
    }
    return cli(*args, env=env)


def test_topics_cli_creates_then_reports_existing(kafka: Settings) -> None:
    first = run_cli(kafka, "topics", "create")
    assert first.returncode == 0, first.stderr
    count = len(all_topics(kafka.retry_tiers))
    assert f"created {count} topics, 0 already existed" in first.stdout
    second = run_cli(kafka, "topics", "create")
    assert (
        f"created 0 topics, {len(all_topics(kafka.retry_tiers))} already existed" in second.stdout
    )
    listing = run_cli(kafka, "topics", "list")
    assert kafka.topic("escalate.retry.3") in listing.stdout


def test_broker_restart_keeps_topics_and_records(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{port}",
        broker_port=port,
        controller_port=free_port(),
        data_dir=tmp_path,
    )
    broker = EmbeddedBroker(settings)
    broker.start()
    try:
        create_topics(settings)
        producer = Producer(settings.confluent_config(**{"acks": "all"}))
        for n in range(20):
            producer.produce("emails.inbound", f"record {n}".encode(), key=str(n).encode())
        assert producer.flush(10) == 0
        del producer  # no client left to complain while the broker is down
        gc.collect()
        assert broker.stop() is True
        assert broker.status().running is False
        broker.start()
        assert broker.status().running is True
        names = {t.name for t in list_topics(settings)}
        assert names == {t.name for t in all_topics(settings.retry_tiers)}
        got = consume_all(settings, "emails.inbound", 20)
        assert sorted(m.value() for m in got) == sorted(f"record {n}".encode() for n in range(20))
    finally:
        broker.stop()
    assert (tmp_path / "kafka" / "broker.log").stat().st_size > 0


def test_start_says_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = Settings(broker_port=port, controller_port=free_port(), data_dir=tmp_path)
        with pytest.raises(BrokerError, match=f"port {port} is already in use"):
            EmbeddedBroker(settings).start()


def test_stop_when_nothing_runs_is_harmless(tmp_path: Path) -> None:
    broker = EmbeddedBroker(Settings(data_dir=tmp_path))
    assert broker.stop() is False
    assert broker.status().running is False
