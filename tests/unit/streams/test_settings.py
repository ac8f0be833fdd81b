from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings
from tests.cli import clean_env, run_cli


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


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MAILROOM_MODELS", "{", "MAILROOM_MODELS: not JSON"),  # was a SettingsError traceback
        ("MAILROOM_RETRY_DELAYS_S", "1,2,3", "MAILROOM_RETRY_DELAYS_S: not JSON"),
        ("MAILROOM_RETRY_DELAYS_S", "[-5, 1]", "MAILROOM_RETRY_DELAYS_S_0: Input should be"),
        ("MAILROOM_JOIN_TIMEOUT_S", "nan", "MAILROOM_JOIN_TIMEOUT_S: Input should be a finite"),
        ("MAILROOM_BUDGET_PER_EMAIL", "-1", "MAILROOM_BUDGET_PER_EMAIL: Input should be greater"),
        ("MAILROOM_BROKER_PORT", "99999", "MAILROOM_BROKER_PORT: Input should be less"),
        ("MAILROOM_FALLBACKS", '["nope"]', "MAILROOM_FALLBACKS: .*not model stages"),
        ("MAILROOM_FAULTS", "clasify:error_rate=0.5", "MAILROOM_FAULTS: no model stage 'clasify'"),
    ],
)
def test_a_variable_that_cannot_be_used_is_one_clear_line_not_a_traceback(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    """``mailroom models list`` (no broker needed) with one bad MAILROOM_* variable."""
    env = clean_env(**{name: value}, MAILROOM_DATA_DIR=str(tmp_path), COLUMNS="200")
    done = run_cli("models", "list", env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(f"error: {says}", done.stderr), done.stderr


def test_an_empty_config_variable_is_no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAILROOM_CONFIG= read the sample's taxonomy, then refused the working folder."""
    monkeypatch.setenv("MAILROOM_CONFIG", "")
    assert Settings().config is None
    assert Settings().taxonomy.names  # the sample company's


def test_a_misspelt_variable_is_named_not_ignored(tmp_path: Path) -> None:
    env = clean_env(MAILROOM_EXACTLY_ONC="false", MAILROOM_DATA_DIR=str(tmp_path), COLUMNS="200")
    done = run_cli("models", "list", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("MAILROOM_EXACTLY_ONC is not a mailroom setting") == 1
    assert "did you mean MAILROOM_EXACTLY_ONCE?" in done.stderr
