"""The poison corpus: values on ``emails.inbound`` that must be dead-lettered, never dropped.

Each entry: (name, raw value, the error class its dead letter must carry). Built here rather
than stored as files so the byte-exact cases (null, empty, truncated, oversized) stay exact.
"""

from __future__ import annotations

import json

from topics.codec import Codec

_EMAIL = {
    "message_id": "<poison-base@example.com>",
    "received_at": 1_700_000_000_000,
    "sender": "p@example.com",
    "recipient": "",
    "subject": "x",
    "body_text": "valid body",
    "body_html": None,
    "headers": {},
    "in_reply_to": None,
    "attachments": [],
    "source": "api",
}
_VALID_AVRO = Codec("FeedbackEmail").encode(_EMAIL)

BROKEN_MIME = (
    b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="zzz\r\n\r\n'
    b"--zzz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--zz"
)

POISON: list[tuple[str, bytes | None, str]] = [
    ("not-utf8", b"\xff\xfe\xfa\x80 not text", "NotJsonError"),
    ("invalid-json", b'{"sender": "a@example.com", "body_text": "unterminated', "NotJsonError"),
    (
        "wrong-shape",
        json.dumps({"sender": 42, "body_text": ["a", "list"]}).encode(),
        "WrongShapeError",
    ),
    ("null-value", None, "EmptyValueError"),
    ("empty-body", b"", "EmptyValueError"),
    (
        "oversized",
        json.dumps({"sender": "a@example.com", "body_text": "x" * (300 * 1024)}).encode(),
        "TooLargeError",
    ),
    ("broken-mime", BROKEN_MIME, "NotJsonError"),
    (
        "deeply-nested",
        b'{"sender": "a", "body_text": "b", "headers": ' + b'{"a": ' * 40 + b'"x"' + b"}" * 41,
        "WrongShapeError",
    ),
    (
        "unknown-fingerprint",
        b"\xc3\x01" + b"\x13\x37" * 4 + _VALID_AVRO[10:],
        "UnknownFingerprintError",
    ),
    ("truncated-avro", _VALID_AVRO[: len(_VALID_AVRO) // 2], "TruncatedBodyError"),
]


def healthy_email(n: int) -> bytes:
    return json.dumps(
        {
            "message_id": f"<healthy-{n}@example.com>",
            "sender": f"healthy{n}@example.com",
            "subject": "Invoice question",
            "body_text": "Hello, could you send me a copy of invoice INV-20391? Thanks, Sam",
        }
    ).encode()
