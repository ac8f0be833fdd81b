from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings


def test_settings_come_from_mailroom_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROOM_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("MAILROOM_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MAILROOM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("MAILROOM_SASL_USERNAME", "svc")
    monkeypatch.setenv("MAILROOM_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("MAILROOM_DATA_DIR", "/var/lib/mailroom")
    monkeypatch.setenv("MAILROOM_CLIENT_OPTIONS", '{"linger.ms": 5}')
    settings = Settings()
    assert settings.data_dir == Path("/var/lib/mailroom")
    assert "s3cret" not in repr(settings)
    conf = settings.confluent_config()
    assert conf["bootstrap.servers"] == "k1:9092,k2:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "s3cret"
    assert conf["linger.ms"] == 5


def test_aiokafka_gets_sasl_and_an_ssl_context_for_sasl_ssl() -> None:
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"
    )
    conf = settings.aiokafka_config()
    assert conf["security_protocol"] == "SASL_SSL"
    assert conf["sasl_plain_password"] == "p"
    # Without an SSL context aiokafka/Faust would silently talk plaintext SASL.
    assert conf["ssl_context"] is not None


def test_settings_are_frozen_and_reject_unknown_names() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.broker_port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings(bootstrap="x")  # type: ignore[call-arg]


def test_topic_prefix_applies_to_names() -> None:
    assert Settings(topic_prefix="t1.").topic("emails.inbound") == "t1.emails.inbound"


def test_cluster_ids_never_look_like_options() -> None:
    from streams.commands.broker import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert all(i[0].isalnum() and len(i) == 22 for i in ids)
