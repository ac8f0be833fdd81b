"""Record values on the wire: Avro single-object encoding, and JSON on ``emails.inbound``.

Single-object encoding is ``C3 01`` + the schema's 8-byte little-endian CRC-64-AVRO
fingerprint + the Avro binary body, so a reader needs no registry: it looks the fingerprint
up among the schema versions in the repository and resolves the record against the current
version. ``emails.inbound`` also takes UTF-8 JSON of the ``FeedbackEmail`` shape, so kcat
or any script can feed the pipeline; missing optional fields take their schema defaults.

Every failure is a ``topics.errors.CodecError`` subclass whose message says what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from topics.errors import (
    CodecError,
    EmptyValueError,
    NotJsonError,
    TooLargeError,
    TruncatedBodyError,
    UnknownFingerprintError,
    WrongShapeError,
)
from topics.registry import Registry, SchemaVersion, registry

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
#: A FeedbackEmail is 3 levels deep (email -> attachments -> attachment); allow some slack.
MAX_JSON_DEPTH = 8
#: a JSON escape of a surrogate (a pair is read as one character; a lone one is kept)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class NotAvroError(CodecError):
    """The value lacks the Avro single-object marker on a topic that only takes Avro."""

    def __init__(self, schema: str, head: bytes) -> None:
        start = head.hex() or "nothing"
        super().__init__(
            f"value is not Avro single-object encoded {schema} (starts with {start}, "
            "expected c301); produce it with mailroom's codec"
        )


class Codec:
    """Encode and decode one record type. Small and reusable: build one per type."""

    def __init__(
        self,
        name: str,
        *,
        max_bytes: int | None = None,
        schemas: Registry | None = None,
    ) -> None:
        self.schemas = schemas or registry()
        if name not in self.schemas.current:
            raise ValueError(f"unknown record type {name!r}; known: {sorted(self.schemas.current)}")
        self.name = name
        self.max_bytes = max_bytes
        self.schema: SchemaVersion = self.schemas.current[name]
        self._header = MAGIC + self.schema.fingerprint

    # -- encode -----------------------------------------------------------------------
    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            schemaless_writer(buf, self.schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise WrongShapeError(self.name, f"cannot encode: {exc}") from exc
        return buf.getvalue()

    # -- decode -----------------------------------------------------------------------
    def decode(self, value: bytes | None) -> dict[str, Any]:
        """Decode an Avro single-object value into a dict of the current schema."""
        data = self._check_size(value)
        if not data.startswith(MAGIC):
            raise NotAvroError(self.name, data[:2])
        return self._decode_avro(data)

    def _check_size(self, value: bytes | None) -> bytes:
        if not value:
            raise EmptyValueError()
        if self.max_bytes is not None and len(value) > self.max_bytes:
            raise TooLargeError(len(value), self.max_bytes)
        return value

    def _decode_avro(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_LEN:
            raise TruncatedBodyError(self.name, f"{len(data)} bytes is shorter than the header")
        fingerprint = data[2:HEADER_LEN]
        writer = self.schemas.by_fingerprint.get(fingerprint)
        if writer is None or writer.name != self.name:
            raise UnknownFingerprintError(fingerprint, self.name)
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            record = cast(
                dict[str, Any],
                schemaless_reader(
                    buf, writer.parsed, None if writer is self.schema else self.schema.parsed
                ),
            )
        except (EOFError, IndexError, ValueError, UnicodeDecodeError, OverflowError) as exc:
            raise TruncatedBodyError(self.name, f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # fastavro raises plain errors on corrupt unions/lengths
            raise TruncatedBodyError(self.name, f"{type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise TruncatedBodyError(
                self.name, f"{len(data) - buf.tell()} unread bytes after the record"
            )
        return record


class InboundCodec(Codec):
    """``FeedbackEmail`` on ``emails.inbound``: Avro, or UTF-8 JSON of the same shape."""

    def __init__(self, *, max_bytes: int | None = None, schemas: Registry | None = None) -> None:
        super().__init__("FeedbackEmail", max_bytes=max_bytes, schemas=schemas)
        self._fields = {f["name"]: f for f in self.schema.definition["fields"]}

    def decode_inbound(
        self, value: bytes | None, *, key: bytes | None = None, timestamp_ms: int = 0
    ) -> dict[str, Any]:
        """Decode Avro or JSON. JSON may omit ``message_id`` (the key, or a content hash,
        stands in) and ``received_at`` (the record timestamp stands in)."""
        data = self._check_size(value)
        if data.startswith(MAGIC):
            return self._decode_avro(data)
        return self._decode_json(data, key=key, timestamp_ms=timestamp_ms)

    def _decode_json(self, data: bytes, *, key: bytes | None, timestamp_ms: int) -> dict[str, Any]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotJsonError(
                f"value is neither Avro (no c301 marker) nor UTF-8 text: invalid byte "
                f"0x{data[exc.start]:02x} at offset {exc.start}"
            ) from exc
        if not text.strip():
            raise EmptyValueError()
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NotJsonError(
                f"value is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc
        except RecursionError as exc:
            raise NotJsonError("value is JSON nested too deeply to be an email") from exc
        if not isinstance(obj, dict):
            raise WrongShapeError(self.name, f"expected a JSON object, got {type(obj).__name__}")
        if _SURROGATE_ESCAPE.search(text):  # "\ud800" alone: not UTF-8, so not Avro
            obj = encodable(obj)
        depth = _depth(obj)
        if depth > MAX_JSON_DEPTH:
            raise WrongShapeError(
                self.name, f"JSON nested {depth} levels deep; an email has at most {MAX_JSON_DEPTH}"
            )
        return self._normalise(obj, key=key, timestamp_ms=timestamp_ms, raw=data)

    def _normalise(
        self, obj: dict[str, Any], *, key: bytes | None, timestamp_ms: int, raw: bytes
    ) -> dict[str, Any]:
        unknown = sorted(set(obj) - set(self._fields))
        if unknown:
            known = ", ".join(self._fields)
            raise WrongShapeError(
                self.name, f"unknown field(s) {', '.join(unknown)}; known: {known}"
            )
        record = dict(obj)
        if not record.get("message_id"):
            record["message_id"] = _fallback_message_id(key, raw)
        if record.get("received_at") is None:
            record["received_at"] = timestamp_ms
        elif isinstance(record["received_at"], str):
            record["received_at"] = _parse_timestamp(record["received_at"])
        for name, spec in self._fields.items():
            if name not in record and "default" in spec:
                record[name] = spec["default"]
        try:
            validate(record, self.schema.parsed, raise_errors=True)
        except ValidationError as exc:
            problems = "; ".join(str(e) for e in getattr(exc, "errors", ())) or str(exc)
            raise WrongShapeError(self.name, problems) from exc
        return record


def _depth(obj: object) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


def _fallback_message_id(key: bytes | None, raw: bytes) -> str:
    if key:
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            pass
    # Deterministic, so a retried or replayed record keeps its identity.
    return f"<{hashlib.sha256(raw).hexdigest()[:32]}@mailroom.generated>"


def _parse_timestamp(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError as exc:
        raise WrongShapeError(
            "FeedbackEmail", f"received_at {text!r} is neither epoch millis nor ISO-8601"
        ) from exc


_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(value: Any) -> Any:
    """``value`` with every lone surrogate (JSON may spell one, ``\\ud800``; the mail
    parser makes them of undecodable bytes) replaced: UTF-8, so Avro, cannot carry them."""
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()} if value else value
    if isinstance(value, list):
        return [encodable(v) for v in value] if value else value
    return value
