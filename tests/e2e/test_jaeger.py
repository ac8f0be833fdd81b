"""Spans of an end-to-end run, exported over OTLP to a real Jaeger v2 and read back.

The binary is built from the Go module proxy by ops/jaeger/build.sh (make setup and
.ci/run try it); without it this test skips and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from tests.e2e.harness import Workers, cli, settled
from tests.kafka_helpers import free_port, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
JAEGER = ROOT / "ops" / "jaeger" / "bin" / "jaeger"


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if not JAEGER.exists():
        pytest.skip("Jaeger binary not built (run ops/jaeger/build.sh)")
    ports = {
        name: free_port()
        for name in (
            "JAEGER_QUERY_PORT",
            "JAEGER_QUERY_GRPC_PORT",
            "JAEGER_OTLP_GRPC_PORT",
            "JAEGER_OTLP_HTTP_PORT",
        )
    }
    with (tmp_path / "jaeger.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(JAEGER), f"--config=file:{ROOT / 'ops' / 'jaeger' / 'config.yaml'}"],
            env={**os.environ, **{k: str(v) for k, v in ports.items()}},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    query = f"http://127.0.0.1:{ports['JAEGER_QUERY_PORT']}"
    try:
        wait_for(
            lambda: get_json(f"{query}/api/services") is not None,
            timeout_s=60,
            what="Jaeger's query API",
        )
        yield query, f"http://127.0.0.1:{ports['JAEGER_OTLP_HTTP_PORT']}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_run_s_traces_are_readable_from_jaeger(
    pipeline: tuple[Settings, Workers], jaeger: tuple[str, str], tmp_path: Path
) -> None:
    settings, workers = pipeline
    query, otlp = jaeger
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    workers.start(**otel)
    mid = "<jaeger-1@example.com>"
    mail = tmp_path / "j.jsonl"
    mail.write_text(
        json.dumps(
            {
                "message_id": mid,
                "sender": "ana@example.com",
                "subject": "Refund",
                "body_text": "Please refund the double charge of $20 on INV-7781.",
            }
        )
        + "\n"
    )
    assert cli(settings, "produce", str(mail), **otel).returncode == 0
    wait_for(lambda: settled(settings, 1), timeout_s=90, what="the email terminal")

    def the_trace() -> dict[str, Any] | None:
        found = get_json(f"{query}/api/traces?service=mailroom-worker&limit=50") or {}
        for trace in found.get("data", []):
            tags = [t for s in trace["spans"] for t in s.get("tags", [])]
            names = {s["operationName"] for s in trace["spans"]}
            if {"key": "mailroom.message_id", "type": "string", "value": mid} in tags and any(
                n.endswith(("responses", "escalations")) for n in names
            ):
                return dict(trace)
        return None

    trace = wait_for(the_trace, timeout_s=60, what="the trace in Jaeger")
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert services == {"mailroom-cli", "mailroom-worker"}
    names = {s["operationName"] for s in trace["spans"]}
    assert f"process {settings.topic('emails.inbound')}" in names
    assert "model classify" in names
    shown = cli(settings, "trace", trace["traceID"], "--jaeger", query)
    assert shown.returncode == 0, shown.stderr
    assert f"{query}/trace/{trace['traceID']}" in shown.stdout.replace("\n", "")
    assert "model classify" in shown.stdout
