"""The client's own chain: the latency floor of scenario 3's latency rows.

mailroom's path for an answered email is eight stage hops, each a consumer group and a
transactional producer (prefilter, classify or urgency, join, route, extract, generate,
quality, escalate). Here are eight hops with nothing of mailroom in them: in one child
process, a thread per hop, each its own consumer (mailroom's consumer settings) and its own
transactional producer (mailroom's producer settings), moving every record it reads to the
next topic and committing the offsets with the group's metadata in one transaction per
poll, with no commit interval. Records go in at a paced rate; each record's latency is from
its send to its read at the far end (one process, one clock), and each hop adds a header
with the time it wrote the record, so the wait before each hop is known too.

    python -m ops.bench.chainref --hops 8 --rate 25 --seconds 30 [--broker-pid PID]

(the settings from MAILROOM_*; prints one JSON object)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psutil
from confluent_kafka import Consumer, Message, TopicPartition

from ops.bench.common import Bench, percentile, worker_env
from ops.bench.cpu import cpu_seconds
from ops.bench.limit import make_topics
from streams.engine.kafka import consumer_config, durable_producer
from streams.engine.reading import read_batch
from streams.engine.writer import Writer
from streams.settings import Settings
from topics import catalog

HOPS = 8  # mailroom's stage hops from emails.inbound to responses
SENT = "bench.sent"  # when the record went in (time.time(), as text)
HOP = "bench.hop"  # when a hop wrote it, one header per hop
POLL_S = 0.1  # as a stage's poll (streams.engine.runner.POLL_S)
WARMUP = 20  # records through the whole chain before the clock starts


def topics(settings: Settings, hops: int) -> list[str]:
    return [settings.topic(f"chain.{n}") for n in range(hops + 1)]


def _read(consumer: Consumer, most: int) -> list[Message]:
    """A stage's poll (``streams.engine.reading.read_batch``), errors left out."""
    return [m for m in read_batch(consumer, most, POLL_S) if m.error() is None]


class Hop(threading.Thread):
    """src -> dst, one transaction per poll: the records, then the offsets with the group's
    metadata, then the commit."""

    def __init__(self, settings: Settings, src: str, dst: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.src, self.dst, self.stop = src, dst, stop
        group = f"{settings.app_id}.{src}"
        self.consumer = Consumer(consumer_config(settings, group, f"chain-{src}"))
        self.writer = Writer(settings, "chain", f"chain-{src}", f"{group}.{uuid.uuid4().hex[:8]}")
        self.assigned = threading.Event()
        self.transactions = 0

    def run(self) -> None:
        producer = self.writer.producer
        producer.init_transactions(30)
        self.consumer.subscribe([self.src], on_assign=lambda _c, _p: self.assigned.set())
        try:
            while not self.stop.is_set():
                messages = _read(self.consumer, 500)
                if not messages:
                    continue
                producer.begin_transaction()
                ends: dict[tuple[str, int], int] = {}
                for m in messages:
                    headers = [*(m.headers() or []), (HOP, repr(time.time()).encode())]
                    producer.produce(self.dst, m.value(), m.key(), headers=headers)
                    ends[(m.topic(), m.partition())] = m.offset() + 1
                producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in ends.items()],
                    self.consumer.consumer_group_metadata(),
                    30,
                )
                producer.commit_transaction(30)
                self.transactions += 1
        finally:
            self.consumer.close()


def measure(
    settings: Settings, hops: int, rate: float, seconds: float, broker_pid: int | None
) -> dict[str, Any]:
    names = topics(settings, hops)
    stop = threading.Event()
    chain = [Hop(settings, names[n], names[n + 1], stop) for n in range(hops)]
    for hop in chain:
        hop.start()
    for hop in chain:
        if not hop.assigned.wait(60):
            raise TimeoutError(f"chain: {hop.src} was never assigned")
    out = Consumer(consumer_config(settings, f"{settings.app_id}.chain-out", "chain-out"))
    out.subscribe([names[-1]])
    producer = durable_producer(settings)
    value = b"x" * 400  # about a Ticket's size on its first hops
    arrived: list[tuple[float, list[float]]] = []  # latency, the gap before each hop

    def send(count: int, per_s: float, tag: str) -> None:
        began = time.time()
        for n in range(count):
            wait = began + n / per_s - time.time()
            if wait > 0:
                time.sleep(wait)
            sent = repr(time.time()).encode()
            producer.produce(names[0], value, f"{tag}-{n}".encode(), headers=[(SENT, sent)])
            producer.poll(0)
        producer.flush(30)

    def collect(count: int) -> None:
        got = 0
        deadline = time.monotonic() + 120 + seconds
        while got < count and time.monotonic() < deadline:
            for m in _read(out, 500):
                now = time.time()
                stamps = [float(v) for k, v in m.headers() or [] if k in (SENT, HOP)]
                stamps.append(now)
                arrived.append((now - stamps[0], [b - a for a, b in itertools.pairwise(stamps)]))
                got += 1

    send(WARMUP, 50.0, "warm")
    collect(WARMUP)
    arrived.clear()
    count = max(20, int(rate * seconds))
    broker = psutil.Process(broker_pid) if broker_pid else None
    me = psutil.Process()
    cpu0 = (cpu_seconds(me), cpu_seconds(broker) if broker else 0.0)
    began = time.monotonic()
    reader = threading.Thread(target=collect, args=(count,), daemon=True)
    reader.start()
    send(count, rate, "paced")
    reader.join()
    elapsed = time.monotonic() - began
    cpu1 = (cpu_seconds(me), cpu_seconds(broker) if broker else 0.0)
    stop.set()
    for hop in chain:
        hop.join(30)
    out.close()
    latencies = [a * 1000 for a, _ in arrived]
    gaps = [[g[n] * 1000 for _, g in arrived if len(g) > n] for n in range(hops + 1)]
    return {
        "hops": hops,
        "rate_per_s": rate,
        "records": count,
        "arrived": len(arrived),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
        # the wait before each hop (and, last, before the reader), p50 of each
        "hop_wait_p50_ms": [percentile(g, 50) for g in gaps],
        "hop_wait_p99_ms": [percentile(g, 99) for g in gaps],
        "transactions_per_s": sum(h.transactions for h in chain) / elapsed,
        "cpu_cores": {
            "chain": (cpu1[0] - cpu0[0]) / elapsed,
            "broker": (cpu1[1] - cpu0[1]) / elapsed if broker else None,
        },
    }


def median_hop_wait(result: dict[str, Any]) -> float:
    """The median over the hops of each hop's p50 wait (the reader's left out)."""
    return float(statistics.median(result["hop_wait_p50_ms"][:-1]))


def chain_latency(bench: Bench, rate: float, seconds: float, hops: int = HOPS) -> dict[str, Any]:
    """The chain at ``rate`` records/s for ``seconds``, in a child process of its own (as a
    worker is), on topics of its own."""
    settings = bench.fresh("chain", (catalog.BUDGET_SPEND,))
    log = settings.data_dir / f"chain-{settings.app_id}.log"
    args = ["--hops", str(hops), "--rate", str(rate), "--seconds", str(seconds)]
    args += ["--broker-pid", str(bench.broker_pid())]
    with log.open("ab") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "ops.bench.chainref", *args],
            env=worker_env(settings),
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=300 + seconds,
            check=False,
        )
    bench.retire(settings)
    if proc.returncode != 0:
        raise RuntimeError(f"chain reference failed; see {log}")
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.chainref")
    parser.add_argument("--hops", type=int, default=HOPS)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--broker-pid", type=int, default=0)
    args = parser.parse_args()
    settings = Settings()
    make_topics(settings, *topics(settings, args.hops))
    result = measure(settings, args.hops, args.rate, args.seconds, args.broker_pid or None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
