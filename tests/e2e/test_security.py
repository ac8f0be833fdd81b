"""SASL/SCRAM over TLS, end to end: the embedded broker with certificates made for the
run, every client connecting as a user (worker, produce, consume, audit, replay, dlq,
topics), wrong credentials refused with a reason, and the password nowhere to be read."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.commands.audit import run_audit
from streams.commands.broker import EmbeddedBroker
from streams.settings import Settings
from tests.e2e import harness
from tests.e2e.harness import env_for
from tests.kafka_helpers import free_port_block, wait_for

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[2] / "processors" / "data"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Settings]:
    port = free_port_block(2)
    settings = Settings(
        data_dir=tmp_path,
        broker_port=port,
        controller_port=port + 1,
        bootstrap_servers=f"127.0.0.1:{port}",
        broker_security="SASL_SSL",
        security_protocol="SASL_SSL",
        sasl_username="mailroom-test",
        sasl_password=f"pw-{secrets.token_hex(12)}",  # type: ignore[arg-type]
        metrics_port=0,
    )
    broker = EmbeddedBroker(settings)
    broker.start()
    try:
        yield settings
    finally:
        broker.stop()


def secrets_env(settings: Settings, password: str | None = None) -> dict[str, str]:
    """The harness's environment plus the client's side of SASL_SSL."""
    assert settings.sasl_password is not None
    return {
        "MAILROOM_SECURITY_PROTOCOL": "SASL_SSL",
        "MAILROOM_SASL_USERNAME": settings.sasl_username or "",
        "MAILROOM_SASL_PASSWORD": password or settings.sasl_password.get_secret_value(),
    }


def cli(
    settings: Settings, *args: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    return harness.cli(settings, *args, **secrets_env(settings, password))


def test_every_client_works_over_sasl_ssl_and_wrong_credentials_end_with_a_reason(
    secured: Settings,
) -> None:
    settings = secured
    assert settings.sasl_password is not None
    password = settings.sasl_password.get_secret_value()
    outputs: list[str] = []

    def ok(*args: str) -> str:
        done = cli(settings, *args)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "created" in ok("topics", "create")
    assert "emails.inbound" in ok("topics", "list")
    log = settings.data_dir / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env={**env_for(settings), **secrets_env(settings)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        rows = (DATA / "training.jsonl").read_text().splitlines()[:20]
        batch = settings.data_dir / "batch.jsonl"
        batch.write_text("\n".join(rows) + "\n")
        assert "produced 20 emails" in ok("produce", str(batch))
        wait_for(
            lambda: len(run_audit(settings).missing) == 0 and run_audit(settings).inbound == 20,
            timeout_s=180,
            what="every email terminal over SASL_SSL",
        )
        audit = ok("audit")
        assert "missing (in no terminal topic): 0" in audit
        assert ok("consume", "responses", "--limit", "1", "--json")
        ok("dlq", "list")
        ok("replay", "extract.dlq", "--dry-run")
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    # Wrong credentials: a command and a worker each stop with the reason, soon.
    for args in (("topics", "list"), ("worker",)):
        began = time.monotonic()
        refused = cli(settings, *args, password="not-the-password")
        took = time.monotonic() - began
        assert refused.returncode != 0
        assert "refused the credentials" in refused.stderr + refused.stdout
        assert "Traceback" not in refused.stderr
        assert took < 30, f"{args} took {took:.1f}s to give up"
        outputs.append(refused.stdout + refused.stderr)

    # The password is in no log, no trace, no output, no help text.
    outputs += [cli(settings, "--help").stdout, cli(settings, "worker", "--help").stdout]
    readable = [
        p
        for p in settings.data_dir.rglob("*")
        if p.is_file() and p.suffix in (".log", ".jsonl") and "tls" not in p.parts
    ]
    assert log in readable
    assert any(p.name.startswith("spans-") for p in readable), "traces were written"
    for path in readable:
        assert password not in path.read_text(errors="replace"), path
    for text in outputs:
        assert password not in text
