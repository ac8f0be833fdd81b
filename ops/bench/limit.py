"""Scenario 1, the limit: Kafka's own producer tool, then the raw Python clients moving
1 KB records from one topic to another (consume, produce with acks=all, commit after the
acks), with no framework at all: the ceiling for a Python hop on this machine."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from ops.bench.common import Bench
from streams.commands.admin import admin_client, wait_led
from streams.settings import Settings

PARTITIONS = 6
RECORD_BYTES = 1024
PERF_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency"
)


def make_topics(settings: Settings, *names: str) -> None:
    admin = admin_client(settings)
    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    for future in futures.values():
        future.result()
    wait_led(admin, list(names), 30)


def producer_performance(bench: Bench, topic: str, records: int) -> dict[str, Any]:
    """``org.apache.kafka.tools.ProducerPerformance`` from the fetched jars."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is not on PATH")
    proc = subprocess.run(
        [
            java,
            "-Xmx512m",
            "-cp",
            str(bench.broker.lib_dir / "*"),
            f"-Dlog4j2.configurationFile={bench.broker.home / 'log4j2.properties'}",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(RECORD_BYTES),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bench.base.bootstrap_servers}",
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = PERF_LINE.findall(proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"ProducerPerformance failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
        )
    sent, per_s, mb_s, avg_ms = found[-1]  # the last line is the summary
    return {
        "records": int(sent),
        "records_per_s": float(per_s),
        "mb_per_s": float(mb_s),
        "avg_latency_ms": float(avg_ms),
    }


async def aiokafka_passthrough_async(settings: Settings, src: str, dst: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        src,
        **settings.aiokafka_config(),
        group_id=f"pass-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(
        **settings.aiokafka_config(), acks="all", enable_idempotence=True, linger_ms=2
    )
    await consumer.start()
    await producer.start()
    moved, began = 0, 0.0
    try:
        while moved < count:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                continue
            if not began:
                began = time.perf_counter()
            futures = [
                await producer.send(dst, r.value, key=r.key)
                for records in batches.values()
                for r in records
            ]
            await asyncio.gather(*futures)
            await consumer.commit()
            moved += len(futures)
        return moved / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await consumer.stop()


def aiokafka_passthrough(settings: Settings, src: str, dst: str, count: int) -> float:
    """Records/s: aiokafka getmany -> send each (acks=all, idempotent) -> await acks -> commit."""
    return asyncio.run(aiokafka_passthrough_async(settings, src, dst, count))


def confluent_passthrough(
    settings: Settings, src: str, dst: str, count: int, *, transactional: bool = False
) -> float:
    """Records/s: confluent-kafka consume(1000) -> produce each -> flush -> commit; with
    ``transactional``, the records and the offsets in one transaction per batch, with the
    consumer's group metadata (what a mailroom stage does under exactly-once)."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"pass-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
    )
    extra: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "linger.ms": 2}
    if transactional:
        extra["transactional.id"] = f"pass-{uuid.uuid4().hex[:6]}"
    producer = Producer(settings.confluent_config(**extra))
    if transactional:
        producer.init_transactions(30)
    consumer.subscribe([src])
    moved, began = 0, 0.0
    try:
        while moved < count:
            messages = [m for m in consumer.consume(1000, timeout=1.0) if not m.error()]
            if not messages:
                continue
            if not began:
                began = time.perf_counter()
            if transactional:
                producer.begin_transaction()
            for m in messages:
                producer.produce(dst, m.value(), m.key())
            if transactional:
                last: dict[tuple[str, int], int] = {}
                for m in messages:
                    last[(m.topic(), m.partition())] = m.offset() + 1
                producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in last.items()],
                    consumer.consumer_group_metadata(),
                    30,
                )
                producer.commit_transaction(30)
            else:
                if producer.flush(30):
                    raise RuntimeError("confluent passthrough: records not acknowledged")
                consumer.commit(asynchronous=False)
            moved += len(messages)
        return moved / (time.perf_counter() - began)
    finally:
        consumer.close()


def run(bench: Bench) -> dict[str, Any]:
    records = 20_000 if bench.quick else 300_000
    moved = 5_000 if bench.quick else 100_000
    run_id = uuid.uuid4().hex[:6]
    src, a_out, c_out = f"limit-{run_id}.src", f"limit-{run_id}.aio", f"limit-{run_id}.ck"
    make_topics(bench.base, src, a_out, c_out)
    java = producer_performance(bench, src, records)
    aio = aiokafka_passthrough(bench.base, src, a_out, moved)
    ck = confluent_passthrough(bench.base, src, c_out, moved)
    return {
        "record_bytes": RECORD_BYTES,
        "java_producer": java,
        "aiokafka_passthrough_per_s": aio,
        "confluent_passthrough_per_s": ck,
        "passthrough_records": moved,
        "aiokafka_vs_java": aio / java["records_per_s"],
        "confluent_vs_java": ck / java["records_per_s"],
    }


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    java = r["java_producer"]
    return [
        (
            "Kafka ProducerPerformance, 1 KB, acks=all",
            f"{java['records_per_s']:,.0f} rec/s, {java['mb_per_s']:.1f} MB/s",
            "reference",
        ),
        (
            "raw confluent-kafka passthrough, 1 KB",
            f"{r['confluent_passthrough_per_s']:,.0f} rec/s",
            f"{r['confluent_vs_java']:.3f} x Java producer",
        ),
        (
            "raw aiokafka passthrough, 1 KB",
            f"{r['aiokafka_passthrough_per_s']:,.0f} rec/s",
            f"{r['aiokafka_vs_java']:.3f} x Java producer",
        ),
    ]
