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

import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from ops.bench.common import Bench, Procs, end_offsets, processes, user_env, wait_for
from ops.bench.limit import PARTITIONS, make_topics
from streams.engine.kafka import read_records
from streams.settings import Settings


def _start(procs: Procs, settings: Settings, name: str, **env: str) -> Path:
    """A Faust worker of app ``name`` under ``procs``; its log file."""
    proc = procs.start(
        [sys.executable, "-m", "ops.bench.faust_app", "worker", "-l", "warn"],
        {
            **user_env(),
            "FAUST_BENCH_BROKER": settings.bootstrap_servers,
            "FAUST_BENCH_APP": name,
            "FAUST_BENCH_DATA": str(settings.data_dir / f"faust-{name}"),
            **env,
        },
        f"faust-{name}",
    )
    return procs.logs[proc.pid]


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
    with processes(settings.data_dir) as procs:
        _start(procs, settings, settings.app_id, FAUST_BENCH_IN=src, FAUST_BENCH_OUT=dst)
        wait_for(
            lambda: end_offsets(settings, ("faust.out",)) >= count,
            600,
            "the Faust hop's outputs",
            0.5,
        )
    stamps = sorted(r.timestamp for r in read_records(settings, "faust.out"))
    bench.retire(settings)
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
    with processes(settings.data_dir) as procs:
        log = _start(
            procs, settings, app, FAUST_BENCH_IN=src, FAUST_BENCH_OUT=dst, FAUST_BENCH_RAISE_ON=key
        )
        began = time.monotonic()
        wait_for(
            lambda: _committed(settings, app, src) >= end_offsets(settings, ("faust.in",)),
            300,
            "Faust's group to commit its input",
            0.5,
        )
        committed_after_s = time.monotonic() - began
    outputs = {(r.key or b"").decode() for r in read_records(settings, "faust.out")}
    return {
        "records": count,
        "outputs": len(outputs),
        "poison_in_output": key in outputs,
        "committed_past_poison": _committed(settings, app, src)
        >= end_offsets(settings, ("faust.in",)),
        "dead_letter_topic": None,  # Faust has none
        "logged": "Poison" in log.read_text(errors="replace"),
        "committed_after_s": committed_after_s,
    }
