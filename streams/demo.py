"""``mailroom demo``: the whole pipeline on the embedded broker, on our bundled samples."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from importlib import resources
from typing import Any

from rich.console import Console

from streams.admin import create_topics
from streams.audit import read_keys, run_audit
from streams.broker import EmbeddedBroker
from streams.produce import produce_emails
from streams.settings import Settings
from streams.tracing import setup_tracing, shutdown_tracing
from topics import catalog
from topics.codec import Codec


def demo_emails(run: str) -> list[dict[str, Any]]:
    """Our ~200 bundled sample emails, with ids unique to this run."""
    text = resources.files("processors.data").joinpath("demo.jsonl").read_text("utf-8")
    now = int(time.time() * 1000)
    emails = []
    for line in text.splitlines():
        row = json.loads(line)
        emails.append(
            {
                "message_id": row["message_id"].replace("@", f".{run}@"),
                "received_at": now,
                "sender": row["sender"],
                "recipient": "support@mailroom.dev",
                "subject": row.get("subject", ""),
                "body_text": row["body_text"],
                "body_html": None,
                "headers": row.get("headers", {}),
                "in_reply_to": None,
                "attachments": [],
                "source": "demo",
            }
        )
    return emails


def run_demo(
    settings: Settings, console: Console, *, faults: str = "", timeout_s: float = 600.0
) -> None:
    broker = EmbeddedBroker(settings)
    started = broker.pid() is None
    began = time.monotonic()
    broker.start()
    console.print(
        f"broker {'started' if started else 'already running'} "
        f"({time.monotonic() - began:.1f}s) on {settings.bootstrap_servers}"
    )
    worker = None
    try:
        result = create_topics(settings)
        console.print(f"topics: {len(result.created)} created, {len(result.existing)} existed")
        log = (settings.data_dir / "demo-worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env={
                **os.environ,
                "MAILROOM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "MAILROOM_DATA_DIR": str(settings.data_dir),
                "MAILROOM_FAULTS": faults,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        setup_tracing("mailroom-demo", settings.data_dir, enabled=settings.tracing)
        emails = demo_emails(f"{int(time.time())}")
        ids = {e["message_id"] for e in emails}
        t0 = time.monotonic()
        produce_emails(settings, emails)
        console.print(f"produced {len(emails)} sample emails; waiting until all are terminal")
        while True:
            terminal = terminal_records(settings, ids)
            if len(terminal) >= len(ids) or time.monotonic() - t0 > timeout_s:
                break
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited; see {settings.data_dir}/demo-worker.log")
            time.sleep(1.0)
        elapsed = time.monotonic() - t0
        summarize(console, terminal, len(ids), elapsed)
        failures(console, settings, ids)
        example = next((m for m in sorted(ids) if "special-5" in m), sorted(ids)[0])
        console.print(f"  one email's journey: mailroom trace '{example}'")
        report = run_audit(settings)
        console.print(
            f"audit: {len(report.missing)} missing, {len(report.duplicated)} in two terminal topics"
        )
    finally:
        shutdown_tracing()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if started:
            broker.stop()
            console.print("broker stopped")


def failures(console: Console, settings: Settings, ids: set[str]) -> None:
    """Retries per tier, dead letters per stage, breaker transitions of this run."""
    retries: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    for spec in catalog.STAGES:
        for topic in (*spec.retry_topics(len(settings.retry_delays_s)), spec.dlq_topic):
            for key, _, _ in read_keys(settings, topic):
                if (key or b"").decode(errors="replace") in ids:
                    (dead if topic == spec.dlq_topic else retries)[topic] += 1
    console.print(
        f"  retried: {sum(retries.values())} "
        + ", ".join(f"{t} {n}" for t, n in sorted(retries.items()))
    )
    console.print(
        f"  dead letters: {sum(dead.values())} "
        + ", ".join(f"{t} {n}" for t, n in sorted(dead.items()))
    )
    log = settings.data_dir / "demo-worker.log"
    transitions = [
        line.split("breaker ", 1)[1].strip()
        for line in log.read_text(errors="replace").splitlines()
        if "breaker " in line
    ]
    console.print(
        f"  breaker transitions: {len(transitions)}"
        + "".join(f"\n    {t}" for t in transitions[:10])
    )


def terminal_records(settings: Settings, ids: set[str]) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    decoders = {
        catalog.RESPONSES: Codec("Response"),
        catalog.ESCALATIONS: Codec("Escalation"),
        catalog.IGNORED: Codec("Ticket"),
    }
    for topic in catalog.terminal_topics():
        for key, value, timestamp in read_keys(settings, topic):
            mid = (key or b"").decode(errors="replace")
            if mid in ids:
                record = decoders[topic].decode(value) if topic in decoders else None
                found[mid] = (topic, (record, timestamp))
    return found


def summarize(
    console: Console, terminal: dict[str, tuple[str, Any]], total: int, elapsed: float
) -> None:
    by_topic = Counter(topic for topic, _ in terminal.values())
    reasons = Counter(
        rec["reason"] for topic, (rec, _) in terminal.values() if topic == catalog.ESCALATIONS
    )
    ignored = Counter(
        rec["decisions"][0]["detail"]
        for topic, (rec, _) in terminal.values()
        if topic == catalog.IGNORED
    )
    latencies = sorted(
        ts - rec["received_at"]
        for topic, (rec, ts) in terminal.values()
        if topic in (catalog.RESPONSES, catalog.ESCALATIONS)
    )
    calls = [
        rec["model_calls"]
        for topic, (rec, _) in terminal.values()
        if topic in (catalog.RESPONSES, catalog.ESCALATIONS)
    ]
    answered = by_topic[catalog.RESPONSES]
    console.print(f"\n[bold]{len(terminal)}/{total} emails terminal in {elapsed:.1f}s[/]")
    console.print(f"  automated: {answered} ({100 * answered / max(total, 1):.1f}%)")
    console.print(
        f"  escalated: {by_topic[catalog.ESCALATIONS]} "
        + ", ".join(f"{r} {n}" for r, n in reasons.most_common())
    )
    console.print(
        f"  ignored:   {by_topic[catalog.IGNORED]} "
        + ", ".join(f"{r} {n}" for r, n in ignored.most_common())
    )
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        console.print(
            f"  end-to-end latency: p50 {statistics.median(latencies):.0f} ms, p95 {p95} ms"
        )
        console.print(f"  model calls per email: {statistics.mean(calls):.2f}")
    console.print(f"  throughput: {len(terminal) / elapsed:.1f} emails/s")
