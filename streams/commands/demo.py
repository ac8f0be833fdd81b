"""``mailroom demo``: the whole pipeline on the embedded broker, on our bundled samples."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.commands.admin import admin_client, create_topics, groups_not_ready
from streams.commands.audit import run_audit
from streams.commands.broker import EmbeddedBroker
from streams.commands.llm import LocalLLM
from streams.commands.produce import produce_emails
from streams.engine.kafka import read_keys
from streams.settings import Settings
from streams.taxonomy import SAMPLE, load_taxonomy
from streams.telemetry.tracing import setup_tracing, shutdown_tracing
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
    settings: Settings,
    console: Console,
    *,
    faults: str = "",
    llm: bool = False,
    count: int = 0,
    timeout_s: float = 900.0,
) -> None:
    """Broker, topics, one worker; once the worker holds its partitions, the sample emails;
    a progress bar until each is terminal; a summary measured from the first email sent.
    ``llm``: every model stage on the local SmolLM2 server (a small batch by default)."""
    local_llm = LocalLLM(settings.data_dir / "llm-server.log") if llm else None
    if local_llm is not None:
        with console.status("starting the local LLM server (SmolLM2-135M, llama.cpp)"):
            local_llm.start()
        console.print(f"LLM server on {local_llm.base_url}: every model stage asks it first")
    try:
        _run(settings, console, faults, local_llm, count or (6 if llm else 0), timeout_s)
    finally:
        if local_llm is not None:
            local_llm.stop()


def _run(
    settings: Settings,
    console: Console,
    faults: str,
    local_llm: LocalLLM | None,
    count: int,
    timeout_s: float,
) -> None:
    broker = EmbeddedBroker(settings)
    started = broker.pid() is None
    began = time.monotonic()
    with console.status("starting the broker"):
        broker.start()
    console.print(
        f"broker {'started' if started else 'already running'} on "
        f"{settings.bootstrap_servers} ({time.monotonic() - began:.1f}s)"
    )
    worker = None
    # The sample emails are written to the sample company: its taxonomy and knowledge
    # base, whatever MAILROOM_CONFIG names for real work.
    catalog.configure_routes(load_taxonomy(SAMPLE).routes)
    environment = {k: v for k, v in os.environ.items() if k != "MAILROOM_CLASSIFIER"}
    try:
        result = create_topics(settings)
        console.print(f"topics: {len(result.created)} created, {len(result.existing)} existed")
        log_path = settings.data_dir / "demo-worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env={
                    **environment,
                    "MAILROOM_CONFIG": str(SAMPLE),
                    "MAILROOM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                    "MAILROOM_DATA_DIR": str(settings.data_dir),
                    "MAILROOM_FAULTS": faults,
                    **(local_llm.env() if local_llm is not None else {}),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        began = time.monotonic()
        with console.status("worker: loading models and joining its consumer groups"):
            wait_until_running(settings, worker, log_path, timeout_s=120.0)
        console.print(
            f"worker running: every stage holds its partitions ({time.monotonic() - began:.1f}s)"
        )
        setup_tracing("mailroom-demo", settings.data_dir, enabled=settings.tracing)
        emails = demo_emails(f"{int(time.time())}")[: count or None]
        ids = {e["message_id"] for e in emails}
        produce_emails(settings, emails)
        terminal = wait_terminal(settings, console, worker, log_path, ids, timeout_s)
        sent = {
            (key or b"").decode(errors="replace"): timestamp
            for key, _, timestamp in read_keys(settings, catalog.INBOUND)
        }
        summarize(
            console,
            terminal,
            {m: sent[m] for m in ids if m in sent},
            len(ids),
            failures(settings, ids),
        )
        report = run_audit(settings)
        console.print(
            f"audit: {len(report.missing)} missing, {len(report.duplicated)} in two terminal "
            f"topics; worker log: {log_path}"
        )
        example = next((m for m in sorted(ids) if "special-5" in m), sorted(ids)[0])
        console.print(f"one email's journey: mailroom trace '{example}'", markup=False)
    finally:
        shutdown_tracing()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if started:
            broker.stop()
            console.print("broker stopped")


def wait_until_running(
    settings: Settings, worker: subprocess.Popen[bytes], log_path: Path, *, timeout_s: float
) -> None:
    """Until every stage group of the worker is stable with all its partitions assigned."""
    deadline = time.monotonic() + timeout_s
    admin = admin_client(settings)
    while waiting := groups_not_ready(settings, catalog.STAGE_NAMES, admin=admin):
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with code {worker.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise SystemExit(
                f"the worker has not joined {', '.join(waiting)} after {timeout_s:.0f}s; "
                f"see {log_path}"
            )
        time.sleep(0.25)


def wait_terminal(
    settings: Settings,
    console: Console,
    worker: subprocess.Popen[bytes],
    log_path: Path,
    ids: set[str],
    timeout_s: float,
) -> dict[str, tuple[str, Any]]:
    """A progress bar until every email has its terminal record (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("emails terminal"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("terminal", total=len(ids))
        while True:
            terminal = terminal_records(settings, ids)
            progress.update(task, completed=len(terminal))
            if len(terminal) >= len(ids) or time.monotonic() > deadline:
                return terminal
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}; see {log_path}")
            time.sleep(0.25)


def failures(settings: Settings, ids: set[str]) -> list[str]:
    """Retries, dead letters and breaker transitions of this run, ``name: value`` each."""
    retries: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    for spec in catalog.STAGES:
        for topic in (*spec.retry_topics(settings.retry_tiers), spec.dlq_topic):
            for key, _, _ in read_keys(settings, topic):
                if (key or b"").decode(errors="replace") in ids:
                    (dead if topic == spec.dlq_topic else retries)[topic] += 1
    transitions: Counter[str] = Counter()
    for line in (settings.data_dir / "demo-worker.log").read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            if entry.get("logger") == "mailroom.breaker":
                transitions[entry["msg"].removeprefix("breaker ")] += 1
    return [
        f"retried: {sum(retries.values())}  {counted(retries)}",
        f"dead letters: {sum(dead.values())}  {counted(dead)}",
        f"breakers: {sum(transitions.values())} transitions  {counted(transitions)}",
    ]


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
    console: Console,
    terminal: dict[str, tuple[str, Any]],
    sent: dict[str, int],
    total: int,
    failed: list[str],
) -> None:
    """Outcomes; latency and throughput from each email's inbound record (produced to a
    running worker) to its terminal record, both as Kafka timestamped them."""
    by_topic = Counter(topic for topic, _ in terminal.values())
    reasons = Counter(
        rec["reason"] for topic, (rec, _) in terminal.values() if topic == catalog.ESCALATIONS
    )
    ignored = Counter(
        rec["decisions"][0]["detail"]
        for topic, (rec, _) in terminal.values()
        if topic == catalog.IGNORED
    )
    latencies = sorted(ts - sent[mid] for mid, (_, (_, ts)) in terminal.items() if mid in sent)
    calls = [
        rec["model_calls"]
        for topic, (rec, _) in terminal.values()
        if topic in (catalog.RESPONSES, catalog.ESCALATIONS)
    ]
    answered = by_topic[catalog.RESPONSES]
    first = min(sent.values(), default=0)
    last = max((ts for _, (_, ts) in terminal.values()), default=first)
    span_s = max((last - first) / 1000, 1e-3)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("answered", f"{answered} ({100 * answered / max(total, 1):.1f}%)")
    table.add_row("escalated", f"{by_topic[catalog.ESCALATIONS]}  {counted(reasons)}")
    table.add_row("ignored", f"{by_topic[catalog.IGNORED]}  {counted(ignored)}")
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        table.add_row(
            "latency",
            f"p50 {statistics.median(latencies):.0f} ms, p95 {p95} ms, max {latencies[-1]} ms "
            "(produced -> terminal record)",
        )
    table.add_row(
        "throughput",
        f"{len(terminal) / span_s:.1f} emails/s over {span_s:.1f}s "
        "(first produced -> last terminal record)",
    )
    if calls:
        table.add_row("model calls", f"{statistics.mean(calls):.2f} per email")
    for line in failed:
        name, _, value = line.partition(": ")
        table.add_row(name, value)
    console.print(
        f"[bold]{len(terminal)}/{total} emails terminal[/], measured from a worker "
        "that held all its partitions before the first email was produced"
    )
    console.print(table)


def counted(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common())
