"""The codec: every schema round-trips; every malformed value raises its own typed error."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.avro_strategies import records
from topics.codec import HEADER_LEN, MAGIC, Codec, InboundCodec, NotAvroError
from topics.errors import (
    CodecError,
    EmptyValueError,
    NotJsonError,
    TooLargeError,
    TruncatedBodyError,
    UnknownFingerprintError,
    WrongShapeError,
)
from topics.registry import TOP_LEVEL, load_definition

CODECS = {name: Codec(name) for name in TOP_LEVEL}


@pytest.mark.parametrize("name", TOP_LEVEL)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_schema_round_trips(name: str, data: st.DataObject) -> None:
    record = data.draw(records(load_definition(name)))
    codec = CODECS[name]
    encoded = codec.encode(record)
    assert encoded[:2] == MAGIC
    assert encoded[2:HEADER_LEN] == codec.schema.fingerprint
    assert codec.decode(encoded) == record


def email(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "message_id": "<a1@example.com>",
        "received_at": 1_700_000_000_000,
        "sender": "ana@example.com",
        "recipient": "support@mailroom.dev",
        "subject": "Charged twice",
        "body_text": "I was charged twice for invoice 4411.",
        "body_html": None,
        "headers": {},
        "in_reply_to": None,
        "attachments": [],
        "source": "api",
    }
    record.update(overrides)
    return record


INBOUND = InboundCodec(max_bytes=1024)
LARGE = InboundCodec(max_bytes=1 << 20)


def test_inbound_accepts_avro_and_json_of_the_same_shape() -> None:
    avro = INBOUND.decode_inbound(CODECS["FeedbackEmail"].encode(email()))
    as_json = INBOUND.decode_inbound(json.dumps(email()).encode())
    assert avro == as_json == email()


def test_minimal_json_takes_defaults_key_and_record_time() -> None:
    value = json.dumps({"sender": "bo@example.com", "body_text": "help"}).encode()
    record = INBOUND.decode_inbound(value, key=b"<k1@x>", timestamp_ms=42)
    assert record["message_id"] == "<k1@x>"
    assert record["received_at"] == 42
    assert record["subject"] == ""
    assert record["attachments"] == []
    assert record["source"] == "api"


def test_json_without_id_or_key_gets_a_stable_generated_id() -> None:
    value = json.dumps({"sender": "bo@example.com", "body_text": "help"}).encode()
    first = INBOUND.decode_inbound(value)["message_id"]
    assert first == INBOUND.decode_inbound(value)["message_id"]
    assert first.endswith("@mailroom.generated>")


def test_json_with_a_lone_surrogate_escape_is_answered_not_dead_lettered() -> None:
    """``"\\ud800"`` alone is valid JSON but no UTF-8: the email could not be written on as
    Avro by any stage. It is read with U+FFFD, as a mail client shows it; a pair stays."""
    value = json.dumps({"sender": "a@example.com", "body_text": "caf\ud800 \U0001f600"})
    record = INBOUND.decode_inbound(value.encode(), key=b"<s@example.com>")
    assert record["body_text"] == "caf\ufffd \U0001f600"
    Codec("FeedbackEmail").encode(record)


def test_json_iso_timestamp_is_converted() -> None:
    value = json.dumps(email(received_at="2024-01-02T03:04:05Z")).encode()
    assert INBOUND.decode_inbound(value)["received_at"] == 1_704_164_645_000


TRUNCATED = CODECS["FeedbackEmail"].encode(email())[:-5]
OTHER_TYPE = CODECS["Response"].encode(
    {
        "message_id": "m",
        "recipient": "r",
        "subject": "s",
        "body": "b",
        "category": "billing",
        "iteration": 1,
        "quality_score": 0.9,
        "received_at": 1,
        "sent_at": 2,
        "cost": 0.0,
        "model_calls": 3,
        "decisions": [],
    }
)


@pytest.mark.parametrize(
    ("value", "error", "says"),
    [
        (None, EmptyValueError, "empty record value"),
        (b"", EmptyValueError, "empty record value"),
        (b"   \n", EmptyValueError, "empty record value"),
        (b"x" * 1025, TooLargeError, "1025 bytes, over the 1024-byte limit"),
        (b"\xff\xfe\x00garbage", NotJsonError, "invalid byte 0xff at offset 0"),
        (b'{"sender": "a@b", ', NotJsonError, "not valid JSON"),
        (b'{"a":' * 600 + b"1" + b"}" * 600, WrongShapeError, "nested 601 levels deep"),
        (b"[" * 100_000 + b"]" * 100_000, NotJsonError, "nested too deeply"),
        (b'["a", "b"]', WrongShapeError, "expected a JSON object, got list"),
        (b"null", WrongShapeError, "expected a JSON object, got NoneType"),
        (b'{"sender": "a@b"}', WrongShapeError, "body_text"),
        (b'{"sender": 5, "body_text": "x"}', WrongShapeError, "sender"),
        (b'{"sender": "a", "body_text": "x", "bodytext": "y"}', WrongShapeError, "bodytext"),
        (
            b'{"sender": "a", "body_text": "x", "received_at": "yesterday"}',
            WrongShapeError,
            "neither epoch millis nor ISO-8601",
        ),
        (MAGIC + b"\x00" * 3, TruncatedBodyError, "shorter than the header"),
        (MAGIC + b"\x01" * 8 + b"body", UnknownFingerprintError, "0101010101010101"),
        (OTHER_TYPE, UnknownFingerprintError, "not a known version of FeedbackEmail"),
        (TRUNCATED, TruncatedBodyError, "truncated or corrupt"),
        (
            CODECS["FeedbackEmail"].encode(email()) + b"\x00\x00",
            TruncatedBodyError,
            "2 unread bytes",
        ),
    ],
)
def test_malformed_values_raise_typed_errors(value: bytes | None, error: type, says: str) -> None:
    codec = INBOUND if error is TooLargeError else LARGE
    with pytest.raises(error) as info:
        codec.decode_inbound(value)
    assert says in str(info.value)
    assert isinstance(info.value, CodecError)
    assert info.value.retriable is False
    assert info.value.error_class == error.__name__


def test_avro_only_topics_refuse_json_with_a_clear_error() -> None:
    with pytest.raises(NotAvroError, match="expected c301"):
        CODECS["Ticket"].decode(b'{"message_id": "x"}')


def test_encoding_a_record_of_the_wrong_shape_is_a_shape_error() -> None:
    with pytest.raises(WrongShapeError, match="cannot encode"):
        CODECS["Response"].encode({"message_id": "m"})
