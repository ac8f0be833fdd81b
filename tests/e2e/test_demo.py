"""``mailroom demo`` as a new user runs it: its own broker, quiet output, honest figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_helpers import free_port

pytestmark = pytest.mark.e2e


def test_the_demo_answers_every_sample_quietly_from_a_running_worker(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    env = {
        **os.environ,
        "MAILROOM_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "MAILROOM_BROKER_PORT": str(port),
        "MAILROOM_CONTROLLER_PORT": str(controller),
        "MAILROOM_DATA_DIR": str(tmp_path / "demo"),
        "MAILROOM_METRICS_PORT": "0",
        "COLUMNS": "120",
    }
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "200/200 emails terminal, measured from a worker that held all its partitions" in output
    assert "audit: 0 missing, 0 in two terminal topics" in output
    assert re.search(r"latency +p50 \d+ ms, p95 \d+ ms", output), output
    # No raw librdkafka line (%4|...|GETPID|...), no warning, no traceback.
    assert not re.search(r"^%\d\|", output, re.MULTILINE), output
    assert not re.search(r"warning|Traceback|error", output, re.IGNORECASE), output
    assert "broker stopped" in output
    assert len(output.splitlines()) <= 24, output  # one screen
