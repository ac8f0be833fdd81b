"""Throughput of the whole pipeline with tracing off and on, side by side in one run.

    .venv/bin/python -m ops.bench.tracing_cost [--emails 1000]

For each mode: a fresh topic prefix, the emails produced first (a backlog), then one worker
process started; the time from its start to the last email's outcome gives emails/s.
The order of the modes alternates over rounds, on the same embedded broker.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streams.admin import create_topics
from streams.audit import run_audit
from streams.broker import EmbeddedBroker
from streams.produce import produce_emails
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def emails(count: int) -> list[dict[str, object]]:
    rows = [
        json.loads(line)
        for line in (ROOT / "processors" / "data" / "training.jsonl").read_text().splitlines()
    ]
    now = int(time.time() * 1000)
    return [
        {
            "message_id": f"<bench-{n}-{uuid.uuid4().hex[:6]}@x>",
            "received_at": now,
            "sender": str(r["sender"]),
            "recipient": "",
            "subject": str(r["subject"]),
            "body_text": str(r["body_text"]),
            "body_html": None,
            "headers": {},
            "in_reply_to": None,
            "attachments": [],
            "source": "bench",
        }
        for n, r in enumerate(rows[i % len(rows)] for i in range(count))
    ]


def run(base: Settings, tracing: bool, count: int, data_dir: Path) -> float:
    name = f"b{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={"topic_prefix": f"{name}.", "app_id": name, "data_dir": data_dir}
    )
    create_topics(settings)
    produce_emails(settings, emails(count))
    env = {
        **os.environ,
        "MAILROOM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MAILROOM_TOPIC_PREFIX": settings.topic_prefix,
        "MAILROOM_APP_ID": name,
        "MAILROOM_DATA_DIR": str(data_dir),
        "MAILROOM_TRACING": str(tracing).lower(),
        "MAILROOM_METRICS_PORT": "0",
        "MAILROOM_JOIN_TIMEOUT_S": "120",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    began = time.monotonic()
    with (data_dir / f"{name}.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while True:
            report = run_audit(settings)
            if report.inbound >= count and not report.missing:
                return count / (time.monotonic() - began)
            time.sleep(1.0)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = Settings(
            bootstrap_servers=f"127.0.0.1:{port}",
            broker_port=port,
            controller_port=free_port(),
            data_dir=Path(tmp),
        )
        broker = EmbeddedBroker(base)
        broker.start()
        try:
            results: dict[bool, list[float]] = {False: [], True: []}
            for r in range(args.rounds):
                for tracing in (False, True) if r % 2 == 0 else (True, False):
                    rate = run(base, tracing, args.emails, Path(tmp))
                    results[tracing].append(rate)
                    print(
                        f"round {r + 1} tracing={'on' if tracing else 'off'}: {rate:.1f} emails/s",
                        flush=True,
                    )
        finally:
            broker.stop()
    off = sum(results[False]) / len(results[False])
    on = sum(results[True]) / len(results[True])
    print(f"tracing off {off:.1f} emails/s, on {on:.1f} emails/s, on/off = {on / off:.3f}")


if __name__ == "__main__":
    main()
