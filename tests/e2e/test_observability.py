"""Metrics that agree with the audit, and no PII in logs, spans or metrics."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streams.commands.audit import run_audit
from streams.engine.kafka import read_keys
from streams.settings import Settings
from tests.e2e.harness import Workers, cli, drained, settled
from tests.kafka_helpers import free_port, wait_for
from topics import catalog

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[2] / "processors" / "data"


def scrape(port: int) -> dict[str, float]:
    """Sample name + labels -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def total(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(name + "{"))


def test_metrics_agree_with_the_audit(pipeline: tuple[Settings, Workers]) -> None:
    settings, workers = pipeline
    port = free_port()
    workers.start(MAILROOM_METRICS_PORT=str(port))
    rows = [json.loads(line) for line in (DATA / "demo.jsonl").read_text().splitlines()][:60]
    batch = settings.data_dir / "b.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli(settings, "produce", str(batch)).returncode == 0
    wait_for(lambda: settled(settings, 60), timeout_s=120, what="every email terminal")
    wait_for(lambda: drained(settings), timeout_s=60, what="every stage caught up")
    audit = run_audit(settings)
    values = scrape(port)
    assert total(values, "mailroom_responses_total") == audit.terminal[catalog.RESPONSES]
    assert total(values, "mailroom_escalations_total") == audit.terminal[catalog.ESCALATIONS]
    ignored = values.get(
        "mailroom_routing_decisions_total{destination=emails.ignored,stage=prefilter}", 0
    )
    assert ignored == audit.terminal[catalog.IGNORED]
    done = audit.terminal[catalog.RESPONSES] + audit.terminal[catalog.ESCALATIONS]
    assert total(values, "mailroom_end_to_end_seconds_count") == done
    assert total(values, "mailroom_model_calls_total") > 0
    assert total(values, "mailroom_dead_letters_total") == 0
    lag = [v for k, v in values.items() if k.startswith("mailroom_consumer_lag{")]
    assert lag
    assert max(lag) == 0


CANARIES = [
    "zq7canary.sender@pii-test.example",
    "kx9canary@pii-test.example",
    "+1 415 555 0199",
    "4000 0566 5566 5556",
    "0151 8843 2207",
]


def test_canary_pii_appears_in_no_log_span_or_metric(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    port = free_port()
    workers.start(MAILROOM_METRICS_PORT=str(port))
    emails = [
        {
            "message_id": f"<pii-{n}@example.com>",
            "sender": CANARIES[0],
            "subject": f"Refund for {CANARIES[1]}",
            "body_text": f"Please refund $40 on INV-{9100 + n}. Call me on {CANARIES[2]} or "
            f"{CANARIES[4]}. My card is {CANARIES[3]}, email {CANARIES[1]}.",
        }
        for n in range(5)
    ]
    path = tmp_path / "pii.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in emails))
    assert cli(settings, "produce", str(path)).returncode == 0
    producer = Producer(settings.confluent_config())  # and a poison carrying the canaries
    producer.produce(
        settings.topic(catalog.INBOUND),
        json.dumps({"sender": CANARIES[0], "body_text": 12345, "subject": CANARIES[3]}).encode(),
        key=b"<pii-poison@example.com>",
    )
    assert producer.flush(10) == 0
    wait_for(lambda: settled(settings, 6), timeout_s=120, what="every email terminal")
    wait_for(lambda: drained(settings), timeout_s=60, what="every stage caught up")
    assert read_keys(settings, "prefilter.dlq")  # the poison went through the error path
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics_text = response.read().decode()
    workers.stop()  # flushes the last spans
    texts = {
        "logs": workers.logs(),
        "metrics": metrics_text,
        "spans": "".join(p.read_text() for p in (settings.data_dir / "traces").glob("*")),
    }
    assert "model_call" in texts["logs"]  # the log lines are there ...
    assert "mailroom.message_id" in texts["spans"]
    for where, text in texts.items():
        for canary in CANARIES:
            assert canary not in text, f"{canary!r} leaked into {where}"
