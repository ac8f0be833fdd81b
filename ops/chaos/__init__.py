"""``make chaos``: one reply per email while workers and a broker are SIGKILLed.

A local 3-node KRaft cluster (replication 3, min.insync.replicas 2); real complaint text
(the CFPB narratives of ``../shared/data``, read at run time) and a share of auto-replies,
produced at a steady rate; 12% faults on every model; a worker SIGKILLed every few seconds
and restarted at once (its successor has the same instance id); one broker SIGKILLed
mid-run and restarted later. Then every id is waited for and the run is judged:

- lost: produced, no outcome (``responses``, ``escalations``, ``emails.ignored``) and no
  dead letter;
- duplicated: two outcomes for one id, in one topic or across them;
- wrong: escalated ``join_timeout`` although both halves (``emails.classified`` and
  ``emails.scored``) were written;
- longest stall: the longest time with emails outstanding and no outcome written, over
  the whole run and per outcome partition;
- time to drain: from the last email produced to the last outcome.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from ops.bench.common import FINAL, SHARED_DATA, Procs, free_port, read_keys, wait_for
from streams.commands.admin import create_topics, groups_not_ready
from streams.commands.audit import run_audit
from streams.commands.cluster import EmbeddedCluster
from streams.commands.produce import produce_emails
from streams.engine.kafka import read_records
from streams.models.local import train_classifier
from streams.settings import MODEL_STAGES, Settings
from topics import catalog
from topics.codec import Codec

CFPB = SHARED_DATA / "cfpb_consumer_complaints" / "cfpb_complaints_with_narratives.csv"


@dataclass(frozen=True)
class Plan:
    emails: int = 5000
    workers: int = 3
    nodes: int = 3
    kill_every_s: float = 10.0
    min_kills: int = 20
    auto_replies: float = 0.1  # share of the emails
    fault_rate: float = 0.12
    broker_down_s: float = 20.0
    rate: float | None = 10.0  # emails/s (None: spread over the kills)
    drain_timeout_s: float = 900.0
    seed: int = 0
    # emails sent, and their outcomes waited for, before the clock starts: the first
    # transactions of three cold JVMs on two cores took seconds (every coordinator and
    # marker queue made on first use), which is start-up, not recovery
    warmup: int = 30

    @property
    def emails_per_s(self) -> float:
        return self.rate or self.emails / (self.kill_every_s * (self.min_kills + 1))


@dataclass
class Report:
    produced: int = 0
    warmup: int = 0  # of produced: sent before the clock started
    answered: int = 0
    escalated: int = 0
    ignored: int = 0
    parked: int = 0  # dead-lettered, no outcome: a person replays them
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    stall_s: float = 0.0
    stall_at_s: float = 0.0  # seconds after the first email
    partition_stall_s: float = 0.0
    # the longest stall that began outside the broker outage (kill to 20 s after restart):
    # what worker kills alone cost
    worker_stall_s: float = 0.0
    worker_stall_at_s: float = 0.0
    # the longest gaps between outcomes: (began, seconds after the first email; length)
    stalls: list[tuple[float, float]] = field(default_factory=list)
    drain_s: float = 0.0
    run_s: float = 0.0
    worker_kills: list[float] = field(default_factory=list)  # seconds after the first email
    broker_kill: tuple[float, float] | None = None  # killed, restarted (seconds)
    audit_exit: int = 0
    join_timeouts: int = 0

    def ok(self, stall_bar_s: float) -> bool:
        return (
            not self.lost
            and not self.duplicated
            and not self.wrong
            and self.stall_s <= stall_bar_s
            and self.audit_exit == 0
        )

    def rows(self) -> list[tuple[str, str]]:
        broker = (
            f"node killed at {self.broker_kill[0]:.1f}s, restarted at {self.broker_kill[1]:.1f}s"
            if self.broker_kill
            else "none"
        )
        return [
            (
                "emails produced (complaints + auto-replies)",
                f"{self.produced} ({self.warmup} before the clock)",
            ),
            (
                "answered / escalated / ignored",
                f"{self.answered} / {self.escalated} / {self.ignored}",
            ),
            ("dead-lettered, no outcome (parked for a person)", str(self.parked)),
            ("lost", str(len(self.lost))),
            ("duplicated (two outcomes for one id)", str(len(self.duplicated))),
            ("wrong (join_timeout with both halves written)", str(len(self.wrong))),
            ("join_timeout escalations", str(self.join_timeouts)),
            ("worker SIGKILLs", str(len(self.worker_kills))),
            ("broker SIGKILL", broker),
            (
                "longest stall, no outcome at all (from the first outcome)",
                f"{self.stall_s:.2f}s (at {self.stall_at_s:.1f}s)",
            ),
            (
                "longest stall beginning outside the broker outage",
                f"{self.worker_stall_s:.2f}s (at {self.worker_stall_at_s:.1f}s)",
            ),
            (
                "the next longest stalls (at)",
                ", ".join(f"{gap:.2f}s ({at:.1f}s)" for at, gap in self.stalls[1:5]) or "none",
            ),
            ("longest stall of one outcome partition", f"{self.partition_stall_s:.2f}s"),
            ("time to drain after the last email", f"{self.drain_s:.1f}s"),
            ("run (first email to last outcome)", f"{self.run_s:.1f}s"),
            ("mailroom audit exit code", str(self.audit_exit)),
        ]


def complaints(count: int, auto_share: float, seed: int) -> list[dict[str, Any]]:
    """``count`` emails: CFPB narratives (cycled) and, mixed in, auto-replies."""
    with CFPB.open(newline="", encoding="utf-8") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if (r.get("Consumer complaint narrative") or "").strip()
        ]
    if not rows:
        raise SystemExit(f"no complaint narratives in {CFPB}")
    rng = random.Random(seed)
    rng.shuffle(rows)
    run = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    emails: list[dict[str, Any]] = []
    for n in range(count):
        row = rows[n % len(rows)]
        auto = rng.random() < auto_share
        emails.append(
            {
                "message_id": f"<chaos-{run}-{n}@chaos.example>",
                "received_at": now,
                "sender": f"consumer{n}@example.com",
                "recipient": "support@example.com",
                "subject": "Automatic reply: Out of office"
                if auto
                else f"{row['Product']}: {row['Issue']}",
                "body_text": "I am out of the office until Monday and will reply then."
                if auto
                else row["Consumer complaint narrative"],
                "body_html": None,
                "headers": {"Auto-Submitted": "auto-replied"} if auto else {},
                "in_reply_to": None,
                "attachments": [],
                "source": "chaos",
            }
        )
    return emails


def free_ports(count: int) -> int:
    """A base port with ``count`` free ports after it."""
    for _ in range(100):
        base = free_port()
        if base + count < 65000 and all(free_port_at(p) for p in range(base, base + count)):
            return base
    raise SystemExit(f"no {count} free ports in a row on 127.0.0.1")


def free_port_at(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Chaos:
    def __init__(self, plan: Plan, data_dir: Path, say: Any = print) -> None:
        self.plan = plan
        self.data_dir = data_dir
        self.say = say
        base = free_ports(2 * plan.nodes)
        self.settings = Settings(
            bootstrap_servers=",".join(f"127.0.0.1:{base + 2 * n}" for n in range(plan.nodes)),
            broker_port=base,
            controller_port=base + 1,
            data_dir=data_dir,
            metrics_port=0,
            app_id="chaos",
            replication_factor=min(3, plan.nodes),
            min_insync_replicas=min(2, plan.nodes),
        )
        self.cluster = EmbeddedCluster(self.settings, plan.nodes)
        self.procs = Procs(data_dir)
        self.workers: list[Any] = []
        self.kills: list[float] = []
        self.broker_kill: tuple[float, float] | None = None
        self.began = 0.0
        self.producing = threading.Event()

    def worker_env(self, n: int) -> dict[str, str]:
        faults = ";".join(f"{m}:error_rate={self.plan.fault_rate}" for m in MODEL_STAGES)
        return {
            "MAILROOM_INSTANCE_ID": f"w{n}",
            "MAILROOM_FAULTS": faults,
            "MAILROOM_RETRY_DELAYS_S": "[0.5, 2.0, 5.0]",
            "MAILROOM_BREAKER_COOLDOWN_S": "2",
            "MAILROOM_REPLICATION_FACTOR": str(self.settings.replication_factor),
            "MAILROOM_TRACING": "false",
        }

    def run(self) -> Report:
        plan = self.plan
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"starting a {plan.nodes}-node cluster in {self.data_dir}")
        self.cluster.start()
        try:
            create_topics(self.settings)
            train_classifier(self.data_dir)
            emails = complaints(plan.emails + plan.warmup, plan.auto_replies, plan.seed)
            warm, emails = emails[: plan.warmup], emails[plan.warmup :]
            self.workers = [
                self.procs.worker(self.settings, **self.worker_env(n)) for n in range(plan.workers)
            ]
            wait_for(
                lambda: not groups_not_ready(self.settings, catalog.STAGE_NAMES),
                timeout_s=300,
                what="every stage group to have its partitions",
                every=1.0,
            )
            if warm:
                self.say(f"warming up: {len(warm)} emails, waited for")
                produce_emails(self.settings, warm, rate=plan.emails_per_s)
                self.wait_all([e["message_id"] for e in warm], plan.drain_timeout_s)
            self.say(
                f"{plan.workers} workers; {plan.emails} emails at {plan.emails_per_s:.1f}/s; "
                f"a worker SIGKILLed every {plan.kill_every_s:.0f}s"
            )
            self.began = time.time()
            self.producing.set()
            chaos = threading.Thread(target=self.havoc, daemon=True)
            chaos.start()
            produce_emails(self.settings, emails, rate=plan.emails_per_s)
            produced_at = time.time()
            self.producing.clear()
            chaos.join()
            self.say("waiting for every email's outcome")
            ids = [e["message_id"] for e in (*warm, *emails)]
            self.wait_all(ids, plan.drain_timeout_s)
            report = self.judge(ids, produced_at)
            report.warmup = len(warm)
            report.audit_exit = 0 if self.audit_clean() else 1
            return report
        finally:
            self.procs.stop()
            self.cluster.stop()

    def havoc(self) -> None:
        """Kill a worker every ``kill_every_s`` (round robin, restarted at once) while
        emails are produced and until ``min_kills``; the second node once, mid-run."""
        plan = self.plan
        duration = plan.emails / plan.emails_per_s
        broker_at = self.began + 0.4 * duration
        victim = 0
        next_kill = self.began + plan.kill_every_s
        node = self.cluster.nodes[min(1, len(self.cluster.nodes) - 1)] if plan.nodes > 1 else None
        restart_at: float | None = None
        while self.producing.is_set() or len(self.kills) < plan.min_kills or restart_at:
            now = time.time()
            if node is not None and self.broker_kill is None and now >= broker_at:
                pid = node.pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    self.broker_kill = (now - self.began, 0.0)
                    restart_at = now + plan.broker_down_s
                    self.say(f"  {now - self.began:6.1f}s SIGKILL broker node {node.node}")
            if restart_at is not None and now >= restart_at and node is not None:
                threading.Thread(target=self.restart, args=(node,), daemon=True).start()
                restart_at = None
            if now >= next_kill and (self.producing.is_set() or len(self.kills) < plan.min_kills):
                n = victim % plan.workers
                Procs.kill(self.workers[n])
                self.kills.append(now - self.began)
                self.workers[n] = self.procs.worker(self.settings, **self.worker_env(n))
                self.say(f"  {now - self.began:6.1f}s SIGKILL worker w{n}, restarted")
                victim += 1
                next_kill = now + plan.kill_every_s
            time.sleep(0.05)

    def restart(self, node: Any) -> None:
        assert self.broker_kill is not None
        self.broker_kill = (self.broker_kill[0], time.time() - self.began)  # launched
        node.start()
        self.say(f"  {time.time() - self.began:6.1f}s broker node {node.node} answers again")

    def wait_all(self, ids: list[str], timeout_s: float) -> None:
        wanted = set(ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                found = read_keys(self.settings, (*FINAL, *dead_letter_topics()))
                done = {key for keys in found.values() for key, _ in keys}
            except KafkaException as exc:  # a leader moving: ask again
                self.say(f"  reading outcomes: {exc}")
                time.sleep(2.0)
                continue
            left = wanted - done
            if not left:
                return
            time.sleep(2.0)
        self.say(f"gave up waiting after {timeout_s:.0f}s")

    def judge(self, ids: list[str], produced_at: float) -> Report:
        s = self.settings
        report = Report(produced=len(ids))
        outcomes: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for topic in FINAL:
            for r in read_records(s, topic):
                outcomes[(r.key or b"").decode()].append((topic, r.timestamp, r.partition))
        parked = set()
        for topic in dead_letter_topics():
            parked |= {(r.key or b"").decode() for r in read_records(s, topic)}
        for mid in ids:
            found = outcomes.get(mid, [])
            if not found:
                if mid in parked:
                    report.parked += 1
                else:
                    report.lost.append(mid)
                continue
            if len(found) > 1:
                report.duplicated[mid] = len(found)
            first = min(found, key=lambda f: f[1])[0]
            report.answered += first == catalog.RESPONSES
            report.escalated += first == catalog.ESCALATIONS
            report.ignored += first == catalog.IGNORED
        classified = {(r.key or b"").decode() for r in read_records(s, catalog.CLASSIFIED)}
        scored = {(r.key or b"").decode() for r in read_records(s, catalog.SCORED)}
        codec = Codec("Escalation")
        for r in read_records(s, catalog.ESCALATIONS):
            escalation = codec.decode(r.value or b"")
            if escalation.get("reason") == "join_timeout":
                report.join_timeouts += 1
                mid = (r.key or b"").decode()
                if mid in classified and mid in scored:
                    report.wrong.append(mid)
        began_ms = int(self.began * 1000)
        # the clock's outcomes (the warm-up's came before it)
        times = sorted(t for found in outcomes.values() for _, t, _ in found if t >= began_ms)
        if times:
            # From the first outcome on: before it the first email is still on its way.
            report.stall_s, at = longest_gap(times)
            report.stall_at_s = (at - began_ms) / 1000
            gaps = sorted(((b - a, a) for a, b in itertools.pairwise(times)), reverse=True)
            report.stalls = [((a - began_ms) / 1000, gap / 1000) for gap, a in gaps[:5]]
            outage = self.broker_kill or (-1.0, -1.0)
            down_ms = (began_ms + outage[0] * 1000, began_ms + (outage[1] + 20) * 1000)
            outside = [
                (b - a, a)
                for a, b in itertools.pairwise(times)
                if not down_ms[0] - 1000 <= a <= down_ms[1]
            ]
            gap, at = max(outside, default=(0, began_ms))
            report.worker_stall_s, report.worker_stall_at_s = gap / 1000, (at - began_ms) / 1000
            report.drain_s = max(0.0, times[-1] / 1000 - produced_at)
            report.run_s = (times[-1] - began_ms) / 1000
        by_partition: dict[int, list[int]] = defaultdict(list)
        for found in outcomes.values():
            for _, t, p in found:
                by_partition[p].append(t)
        report.partition_stall_s = max(
            (longest_gap(sorted(ts))[0] for ts in by_partition.values() if len(ts) > 1),
            default=0.0,
        )
        report.worker_kills = list(self.kills)
        report.broker_kill = self.broker_kill
        return report

    def audit_clean(self) -> bool:
        audit = run_audit(self.settings)
        return not audit.missing and not audit.duplicated


def longest_gap(times_ms: list[int]) -> tuple[float, int]:
    """The longest gap between consecutive times, in seconds, and where it began."""
    gap, at = 0, times_ms[0] if times_ms else 0
    for a, b in itertools.pairwise(times_ms):
        if b - a > gap:
            gap, at = b - a, a
    return gap / 1000, at


def dead_letter_topics() -> list[str]:
    return [spec.dlq_topic for spec in catalog.STAGES]
