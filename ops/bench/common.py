"""What every scenario shares: one embedded broker, fresh topic prefixes, sample emails,
worker processes (stopped by pid), and reading outcomes back from the topics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streams.commands.admin import admin_client, create_topics
from streams.commands.broker import EmbeddedBroker, partition_offsets
from streams.engine.kafka import consume_to, reader
from streams.models.local import train_classifier
from streams.settings import Settings
from topics import catalog

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
FINAL = (catalog.RESPONSES, catalog.ESCALATIONS, catalog.IGNORED)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every)


def sample_emails(count: int, tag: str = "") -> list[dict[str, Any]]:
    """``count`` emails cycled from our own training set, each with a new message id."""
    rows = [
        json.loads(line)
        for line in (ROOT / "processors" / "data" / "training.jsonl").read_text().splitlines()
    ]
    now = int(time.time() * 1000)
    run = uuid.uuid4().hex[:6]
    return [
        {
            "message_id": f"<bench-{tag}{run}-{n}@bench.example>",
            "received_at": now,
            "sender": str(row["sender"]),
            "recipient": "support@example.com",
            "subject": str(row["subject"]),
            "body_text": str(row["body_text"]),
            "body_html": None,
            "headers": {},
            "in_reply_to": None,
            "attachments": [],
            "source": "bench",
        }
        for n, row in enumerate(rows[i % len(rows)] for i in range(count))
    ]


@dataclass
class Bench:
    """One embedded broker for the whole run; every measurement gets its own topics."""

    data_dir: Path
    quick: bool = False
    base: Settings = field(init=False)
    broker: EmbeddedBroker = field(init=False)
    started_s: float = 0.0

    def __post_init__(self) -> None:
        port = free_port()
        self.base = Settings(
            bootstrap_servers=f"127.0.0.1:{port}",
            broker_port=port,
            controller_port=free_port(),
            data_dir=self.data_dir,
            metrics_port=0,
        )
        self.broker = EmbeddedBroker(self.base)

    def start(self) -> None:
        began = time.monotonic()
        self.broker.start()
        self.started_s = time.monotonic() - began
        train_classifier(self.data_dir)  # once; every worker of the run loads it

    def stop(self) -> None:
        self.broker.stop()

    def broker_pid(self) -> int:
        pid = self.broker.pid()
        if pid is None:
            raise RuntimeError("the bench's broker is not running")
        return pid

    def fresh(self, name: str, only: tuple[str, ...] = ()) -> Settings:
        """Settings with a topic prefix and app id of their own; every catalog topic made,
        or ``only`` those (creating all 57 takes seconds)."""
        run = f"{name}-{uuid.uuid4().hex[:6]}"
        settings = self.base.model_copy(update={"topic_prefix": f"{run}.", "app_id": run})
        create_topics(settings, tuple(catalog.topic(t) for t in only) or None)
        return settings

    def retire(self, settings: Settings, timeout_s: float = 60.0) -> None:
        """Delete the topics of a measurement that is done (those of its prefix), so the
        next one meets the broker as this one did: a full bench makes dozens of prefixes
        of up to 57 topics (6 partitions each), and without this the one broker held
        thousands of partitions nothing read any more by the last scenario."""
        admin = admin_client(settings)
        names = [
            name
            for name in admin.list_topics(timeout=timeout_s).topics
            if name.startswith(settings.topic_prefix)
        ]
        if not names:
            return
        for future in admin.delete_topics(names, operation_timeout=timeout_s).values():
            future.result()
        wait_for(
            lambda: (
                not any(
                    n.startswith(settings.topic_prefix)
                    for n in admin.list_topics(timeout=10).topics
                )
            ),
            timeout_s,
            f"the topics of {settings.topic_prefix} to go",
            0.2,
        )


def end_offsets(settings: Settings, topics: tuple[str, ...]) -> int:
    """How many records the catalog ``topics`` hold now (sum of their end offsets)."""
    admin = admin_client(settings)
    names = [settings.topic(t) for t in topics]
    metadata = admin.list_topics(timeout=10)
    offsets = partition_offsets(admin, metadata, OffsetSpec.latest(), timeout_s=10, names=names)
    return sum(offsets.values())


def terminal_topics() -> tuple[str, ...]:
    return tuple(catalog.terminal_topics())


def outcome_topics() -> tuple[str, ...]:
    """What a system other than mailroom needs: its input and the outcome topics."""
    return (catalog.INBOUND, *terminal_topics())


@dataclass
class Outcomes:
    """Per message id: when it went in, where and when it came out."""

    produced_ms: dict[str, int]
    final: dict[str, tuple[str, int]]  # first outcome: topic, broker timestamp
    duplicates: int
    dead_lettered: set[str]

    def latencies_ms(self, ids: set[str] | None = None) -> list[float]:
        return [
            float(self.final[m][1] - t)
            for m, t in self.produced_ms.items()
            if m in self.final and (ids is None or m in ids)
        ]

    def counts(self) -> dict[str, int]:
        answered = sum(1 for t, _ in self.final.values() if t == catalog.RESPONSES)
        escalated = sum(1 for t, _ in self.final.values() if t == catalog.ESCALATIONS)
        ignored = sum(1 for t, _ in self.final.values() if t == catalog.IGNORED)
        failed = len(self.dead_lettered - set(self.final))
        lost = len(set(self.produced_ms) - set(self.final) - self.dead_lettered)
        return {
            "answered": answered,
            "escalated": escalated,
            "ignored": ignored,
            "failed": failed,
            "lost": lost,
            "duplicates": self.duplicates,
        }

    def finished_ms(self) -> list[int]:
        return sorted(ts for _, ts in self.final.values())


def read_keys(settings: Settings, topics: tuple[str, ...]) -> dict[str, list[tuple[str, int]]]:
    """(key, broker timestamp) of every record now in the catalog ``topics``, one consumer
    for all of them (a consumer per topic costs a second per dozen topics)."""
    admin = admin_client(settings)
    names = {settings.topic(t): t for t in topics}
    metadata = admin.list_topics(timeout=10)
    ends = partition_offsets(admin, metadata, OffsetSpec.latest(), timeout_s=10, names=names)
    found: dict[str, list[tuple[str, int]]] = {t: [] for t in topics}
    todo = {tp: end for tp, end in ends.items() if end > 0}
    if not todo:
        return found
    consumer = reader(settings)
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in todo])

        def keep(msg: Message) -> None:
            key = (msg.key() or b"").decode("utf-8", errors="replace")
            found[names[msg.topic()]].append((key, msg.timestamp()[1]))

        consume_to(consumer, todo, keep)
    finally:
        consumer.close()
    return found


def read_outcomes(settings: Settings) -> Outcomes:
    """Read ``emails.inbound`` and every terminal topic of ``settings`` back."""
    records = read_keys(settings, outcome_topics())
    produced = dict(records[catalog.INBOUND])
    final: dict[str, tuple[str, int]] = {}
    duplicates = 0
    parked: set[str] = set()
    for topic in terminal_topics():
        for mid, timestamp in records[topic]:
            if topic not in FINAL:
                parked.add(mid)
            elif mid in final:
                duplicates += 1
            else:
                final[mid] = (topic, timestamp)
    return Outcomes(produced, final, duplicates, parked)


def settle(settings: Settings, count: int, timeout_s: float, grace_s: float = 60.0) -> float:
    """Wait until each of the ``count`` emails has an outcome or a dead letter; the time then.

    Counting records is not enough (one email can leave a dead letter and an outcome, and
    a transaction's commit marker takes an offset of its own), so once the terminal topics
    hold ``count`` offsets, the emails are checked one by one until none is missing, or
    until ``grace_s`` pass with no new one finished; those still missing are reported as
    lost by ``read_outcomes``.
    """
    wait_for(
        lambda: end_offsets(settings, terminal_topics()) >= count,
        timeout_s,
        f"{count} outcomes",
        every=0.25,
    )
    ended = time.time()
    deadline = time.monotonic() + grace_s
    done = -1
    while time.monotonic() < deadline:
        counts = read_outcomes(settings).counts()
        if not counts["lost"]:
            break
        if count - counts["lost"] > done:  # progress: the grace starts again
            done = count - counts["lost"]
            deadline = time.monotonic() + grace_s
        time.sleep(1.0)
        ended = time.time()
    return ended


def first_intake_ms(settings: Settings) -> int:
    """When mailroom took its first email in: the first prefilter output."""
    from streams.engine.kafka import read_records

    return min(
        r.timestamp
        for topic in (catalog.ACCEPTED, catalog.IGNORED)
        for r in read_records(settings, topic)
    )


def hop_waits(data_dir: Path, ids: set[str]) -> dict[str, dict[str, float]]:
    """Queue wait per hop, from span timestamps: for each CONSUMER span of these emails,
    its start minus the end of the PRODUCER span that wrote the record (held until the
    commit, the transaction, the fetch, the poll and the wait for a free slot), by topic.
    Milliseconds: p50, p99, max, and how many were seen."""
    spans: dict[str, dict[str, Any]] = {}
    for path in sorted((data_dir / "traces").glob("spans-*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    span = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a killed process
                if span.get("kind") in ("PRODUCER", "CONSUMER"):
                    spans[span["span_id"]] = span
    waits: dict[str, list[float]] = {}
    for span in spans.values():
        if span["kind"] != "CONSUMER":
            continue
        if span["attributes"].get("mailroom.message_id") not in ids:
            continue
        parent = spans.get(span.get("parent_id") or "")
        if parent is None or parent["kind"] != "PRODUCER":
            continue
        topic = span["attributes"].get("messaging.destination.name", span["name"])
        waits.setdefault(topic, []).append((span["start"] - parent["end"]) / 1e6)
    return {
        topic: {
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": max(values),
            "count": len(values),
        }
        for topic, values in sorted(waits.items())
    }


def user_env() -> dict[str, str]:
    """The user's environment without their MAILROOM_* or OTEL_* settings (spans go to a
    file; every run measures the same defaults)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "OTEL_"))}


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a bench process: ``user_env()`` plus the run's settings and
    ``extra``."""
    return {
        **user_env(),
        "MAILROOM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MAILROOM_TOPIC_PREFIX": settings.topic_prefix,
        "MAILROOM_APP_ID": settings.app_id,
        "MAILROOM_DATA_DIR": str(settings.data_dir),
        "MAILROOM_METRICS_PORT": "0",
        "MAILROOM_JOIN_TIMEOUT_S": str(settings.join_timeout_s),
        **extra,
    }


class Procs:
    """Processes of one measurement: started with logs in the data dir, stopped by pid."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        path = self.log_dir / f"{name}-{uuid.uuid4().hex[:8]}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def worker(
        self, settings: Settings, module: str = "streams.cli", **env: str
    ) -> subprocess.Popen[bytes]:
        """``mailroom worker`` (``module``: another entry point that takes its arguments,
        e.g. ``ops.bench.instant``, the worker with stand-ins for its models)."""
        return self.start(
            [sys.executable, "-m", module, "worker"], worker_env(settings, **env), "worker"
        )

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def processes(log_dir: Path) -> Iterator[Procs]:
    procs = Procs(log_dir)
    try:
        yield procs
    finally:
        procs.stop()
