"""Faust, measured (scenario 2): the Faust agent hop of ``ops.bench.faust_app`` over the
same Ticket records as the mailroom hop, and what Faust does with a record its agent
raises on, beside what mailroom does with it.

Throughput: records over the time from the first output to the last (the output's
timestamps, set by Faust's producer), so the worker's start-up and group join are left
out, as they are for the mailroom hop. The raising agent: once the group has committed
every input partition to its end, the record's fate is read back from Kafka: is it in
the output, is there a dead letter, did the group commit past it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from ops.bench.common import ROOT, Bench, wait_for
from ops.bench.limit import PARTITIONS, make_topics
from streams.engine.kafka import read_records
from streams.settings import Settings


def _start(bench: Bench, settings: Settings, name: str, **env: str) -> subprocess.Popen[bytes]:
    own = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "OTEL_"))}
    log = settings.data_dir / f"faust-{name}.log"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ops.bench.faust_app", "worker", "-l", "warn"],
            env={
                **own,
                "FAUST_BENCH_BROKER": settings.bootstrap_servers,
                "FAUST_BENCH_APP": name,
                "FAUST_BENCH_DATA": str(settings.data_dir / f"faust-{name}"),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _end(settings: Settings, topic: str) -> int:
    consumer = Consumer(settings.confluent_config(**{"group.id": "faust-bench-probe"}))
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        )
    finally:
        consumer.close()


def _committed(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer(settings.confluent_config(**{"group.id": group}))
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def throughput(bench: Bench, fill: Any, count: int) -> dict[str, Any]:
    """The Faust agent hop: records/s from its first output to its last."""
    settings = bench.fresh("faust")
    src, dst = settings.topic("faust.in"), settings.topic("faust.out")
    make_topics(settings, src, dst)
    fill(settings, src, count)
    proc = _start(bench, settings, settings.app_id, FAUST_BENCH_IN=src, FAUST_BENCH_OUT=dst)
    try:
        wait_for(lambda: _end(settings, dst) >= count, 600, "the Faust hop's outputs", 0.5)
    finally:
        _stop(proc)
    stamps = sorted(r.timestamp for r in read_records(settings, "faust.out"))
    return {
        "records": count,
        "per_s": (len(stamps) - 1) / max((stamps[-1] - stamps[0]) / 1000, 1e-3),
    }


def raising_agent(bench: Bench, fill: Any, count: int = 60) -> dict[str, Any]:
    """Faust's agent raises on one record: where that record ends up."""
    settings = bench.fresh("faustpoison")
    src, dst = settings.topic("faust.in"), settings.topic("faust.out")
    make_topics(settings, src, dst)
    fill(settings, src, count)
    poison = next(iter(read_records(settings, "faust.in")))
    key = (poison.key or b"").decode()
    app = settings.app_id
    proc = _start(
        bench, settings, app, FAUST_BENCH_IN=src, FAUST_BENCH_OUT=dst, FAUST_BENCH_RAISE_ON=key
    )
    began = time.monotonic()
    try:
        wait_for(
            lambda: _committed(settings, app, src) >= _end(settings, src),
            300,
            "Faust's group to commit its input",
            0.5,
        )
        committed_after_s = time.monotonic() - began
    finally:
        _stop(proc)
    outputs = {(r.key or b"").decode() for r in read_records(settings, "faust.out")}
    log = Path(settings.data_dir / f"faust-{app}.log").read_text(errors="replace")
    return {
        "records": count,
        "outputs": len(outputs),
        "poison_in_output": key in outputs,
        "committed_past_poison": _committed(settings, app, src) >= _end(settings, src),
        "dead_letter_topic": None,  # Faust has none
        "logged": "Poison" in log,
        "committed_after_s": committed_after_s,
    }
