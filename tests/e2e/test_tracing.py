"""One trace per email across separate worker processes, retries included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.commands.traceview import load_spans
from streams.settings import Settings
from tests.e2e.harness import Workers, cli, settled
from tests.kafka_helpers import free_port, wait_for

pytestmark = pytest.mark.e2e
SPLIT = ("prefilter,classify,urgency,join", "route,extract,generate,quality,escalate")


def write(path: Path, *emails: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in emails))
    return path


def chain(spans: list[dict[str, Any]], end: str) -> list[str]:
    """Span names from the root down to the span named ``end``, following parent links;
    empty while any link is missing (a process may not have flushed its spans yet)."""
    by_id = {s["span_id"]: s for s in spans}
    ends = [s for s in spans if s["name"] == end]
    if not ends:
        return []
    node: dict[str, Any] | None = ends[0]
    names: list[str] = []
    while node is not None:
        names.append(node["name"])
        parent = node["parent_id"]
        if parent is not None and parent not in by_id:
            return []
        node = by_id.get(parent) if parent else None
    return names[::-1]


def complete_trace(settings: Settings, message_id: str, last: str) -> list[dict[str, Any]]:
    spans = load_spans(settings.data_dir, message_id)
    return spans if chain(spans, f"send {settings.topic(last)}") else []


def test_a_critical_email_is_one_trace_across_processes(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    for stages in SPLIT:
        workers.start(stages)
    mid = "<trace-critical@example.com>"
    mail = write(
        tmp_path / "c.jsonl",
        {
            "message_id": mid,
            "sender": "cto@big.example",
            "subject": "DOWN",
            "body_text": "Our whole team is down and production is completely broken.",
        },
    )
    assert cli(settings, "produce", str(mail)).returncode == 0
    spans = wait_for(
        lambda: complete_trace(settings, mid, "escalations"),
        timeout_s=90,
        what="every span of the trace flushed",
    )
    assert len({s["trace_id"] for s in spans}) == 1
    t = settings.topic
    path = chain(spans, f"send {t('escalations')}")
    # The join continues the trace of whichever half arrived second.
    half = "classified" if f"send {t('emails.classified')}" in path else "scored"
    assert path == [
        f"send {t('emails.inbound')}",  # the root, started by mailroom produce
        f"process {t('emails.inbound')}",
        f"send {t('emails.accepted')}",
        f"process {t('emails.accepted')}",
        f"send {t('emails.' + half)}",
        f"process {t('emails.' + half)}",
        f"send {t('emails.triaged')}",
        f"process {t('emails.triaged')}",
        f"send {t('emails.route.critical')}",
        f"process {t('emails.route.critical')}",
        f"send {t('escalations')}",
    ]
    assert not [s for s in spans if s["attributes"].get("mailroom.stage") == "generate"]
    services = {s["service"] for s in spans}
    assert services == {"mailroom-cli", "mailroom-worker"}
    consume = next(s for s in spans if s["name"] == f"process {t('emails.triaged')}")
    attrs = consume["attributes"]
    assert consume["kind"] == "CONSUMER"
    assert attrs["messaging.system"] == "kafka"
    assert attrs["messaging.operation.name"] == "process"
    assert attrs["messaging.destination.name"] == t("emails.triaged")
    assert attrs["messaging.consumer.group.name"] == f"{settings.app_id}.route"
    assert attrs["messaging.kafka.message.key"] == mid
    assert "messaging.destination.partition.id" in attrs
    assert isinstance(attrs["messaging.kafka.offset"], int)
    assert attrs["mailroom.message_id"] == mid
    assert attrs["mailroom.decision"] == "emails.route.critical"  # catalog name
    models = {s["attributes"]["mailroom.stage"] for s in spans if s["name"].startswith("model ")}
    assert models == {"classify", "urgency"}


def test_a_retried_email_keeps_one_trace(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    workers.start(
        MAILROOM_FAULTS="extract:down_calls=2",
        MAILROOM_BREAKER_THRESHOLD="100",
        MAILROOM_RETRY_DELAYS_S="[0.5, 0.5, 0.5]",
    )
    mid = "<trace-retry@example.com>"
    mail = write(
        tmp_path / "r.jsonl",
        {
            "message_id": mid,
            "sender": "ana@example.com",
            "subject": "Invoice",
            "body_text": "Please send me a corrected invoice for INV-10293.",
        },
    )
    assert cli(settings, "produce", str(mail)).returncode == 0
    spans = wait_for(
        lambda: complete_trace(settings, mid, "responses"),
        timeout_s=120,
        what="every span of the trace flushed",
    )
    assert len({s["trace_id"] for s in spans}) == 1
    retries = [
        s
        for s in spans
        if s["name"].startswith("process ") and s["attributes"].get("mailroom.stage") == "extract"
    ]
    outcomes = [
        s["attributes"]["mailroom.outcome"] for s in sorted(retries, key=lambda s: s["start"])
    ]
    assert outcomes[0] == "retry"
    assert outcomes[-1] == "ok"
    assert any(s["name"] == f"send {settings.topic('extract.retry.1')}" for s in spans)
    failed = [s for s in retries if s["status"] == "ERROR"]
    assert failed
    assert "InjectedFault" in failed[0]["error"]


def test_an_unreachable_collector_does_not_stop_the_pipeline(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    closed = f"http://127.0.0.1:{free_port()}"
    workers.start(OTEL_EXPORTER_OTLP_ENDPOINT=closed, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    rows = [
        {
            "message_id": f"<otlp-{n}@example.com>",
            "sender": f"c{n}@example.com",
            "subject": "Question",
            "body_text": f"Could you resend invoice INV-{5000 + n}?",
        }
        for n in range(30)
    ]
    path = write(tmp_path / "o.jsonl", *rows)
    assert cli(settings, "produce", str(path), OTEL_EXPORTER_OTLP_ENDPOINT=closed).returncode == 0
    wait_for(lambda: settled(settings, 30), timeout_s=120, what="every email terminal")
    assert not list((settings.data_dir / "traces").glob("*.jsonl"))  # spans went to OTLP
