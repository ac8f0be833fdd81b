from __future__ import annotations

import json
import logging

import pytest

from streams.logs import JsonFormatter, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ana.ruiz+x@mail.example.com now", "write to <email> now"),
        ("card 4111 1111 1111 1111 expired", "card <card> expired"),
        ("card 4111-1111-1111-1111", "card <card>"),
        ("call +44 20 7946 0958 today", "call <phone> today"),
        ("call (415) 555-0199", "call (<phone>"),
        ("invoice INV-2291 for 49.00", "invoice INV-2291 for 49.00"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("mailroom.stage", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_fields_and_redact_unless_payloads_are_on() -> None:
    rec = record(
        "failed for bo@x.example",
        event="model_call",
        stage="classify",
        latency_ms=1.5,
        error="bad value bo@x.example",
    )
    line = json.loads(JsonFormatter().format(rec))
    assert line["event"] == "model_call"
    assert line["stage"] == "classify"
    assert line["latency_ms"] == 1.5
    assert "bo@x.example" not in json.dumps(line)
    raw = json.loads(JsonFormatter(payloads=True).format(rec))
    assert raw["error"] == "bad value bo@x.example"
