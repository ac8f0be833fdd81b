"""The bench's CPU split names where a hop's time goes: every telemetry module is counted
as the part it is, not as the framework (the spans, the trace context and the JSON lines
moved into streams/telemetry/ once and were counted as framework until this test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.bench.hop import category

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("module", "part"),
    [
        ("streams/telemetry/spans.py", "tracing (OpenTelemetry)"),
        ("streams/telemetry/tracing.py", "tracing (OpenTelemetry)"),
        ("streams/telemetry/logs.py", "logging (JSON lines)"),
        ("streams/telemetry/metrics.py", "metrics (Prometheus)"),
        ("streams/telemetry/sensor.py", "telemetry hooks (the stage's sensor)"),
        ("topics/codec.py", "codec (Avro)"),
        ("streams/engine/runner.py", "framework (streams/, topics/)"),
        ("streams/engine/inflight.py", "framework (streams/, topics/)"),
    ],
)
def test_each_module_of_the_hop_is_counted_as_the_part_it_is(module: str, part: str) -> None:
    path = ROOT / module
    assert path.exists(), module
    assert category(str(path)) == part


def test_no_telemetry_module_is_counted_as_framework() -> None:
    modules = sorted((ROOT / "streams" / "telemetry").glob("*.py"))
    counted = {m.name: category(str(m)) for m in modules if m.name != "__init__.py"}
    assert counted, "streams/telemetry has no modules"
    assert not [m for m, part in counted.items() if part.startswith("framework")], counted
