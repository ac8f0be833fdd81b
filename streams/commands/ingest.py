"""Read emails from the files a user has: .eml, .mbox, JSON lines, CSV (subject, body).

Each yields ``FeedbackEmail`` records (dicts of the Avro shape). A file that cannot be
read raises ``IngestError`` naming the file and, for line formats, the line.
"""

from __future__ import annotations

import mailbox
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from processors import tables
from streams.commands.mail import from_bytes, generated_id
from streams.errors import IngestError
from topics.codec import encodable


def read_eml(path: Path) -> Iterator[dict[str, Any]]:
    yield from_bytes(_read_bytes(path), source="eml")


def read_mbox(path: Path) -> Iterator[dict[str, Any]]:
    try:
        box = mailbox.mbox(str(path), factory=None, create=False)
        keys = box.keys()
    except OSError as exc:
        raise IngestError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    try:
        for key in keys:
            yield from_bytes(box.get_bytes(key), source="mbox")
    finally:
        box.close()


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for number, row in tables.rows(path, IngestError):
        yield _from_row(row, source="jsonl", where=f"{path}: line {number}")


def read_csv(path: Path) -> Iterator[dict[str, Any]]:
    for number, row in tables.rows(path, IngestError):
        fields = {k.lower(): v for k, v in row.items()}
        if "body" not in fields and "body_text" not in fields:
            raise IngestError(
                f"{path}: CSV needs a 'body' column (and optionally 'subject'); "
                f"columns: {', '.join(row)}"
            )
        yield _from_row(fields, source="csv", where=f"{path}: line {number}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


class _Attachment(BaseModel):
    filename: str = "unnamed"
    content_type: str = "application/octet-stream"
    size_bytes: int = Field(default=0, ge=0)


class _Row(BaseModel):
    """One email of a table: text fields may be numbers, ``received_at`` a time in the
    forms tools write; anything else that is not the FeedbackEmail shape is an error."""

    model_config = ConfigDict(coerce_numbers_to_str=True, extra="ignore")

    message_id: str = ""
    received_at: int | None = None
    sender: str = "unknown@customers.invalid"
    recipient: str = ""
    subject: str = ""
    body_text: str = ""
    body_html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    in_reply_to: str | None = None
    attachments: list[_Attachment] = Field(default_factory=list)
    source: str

    @field_validator("received_at", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        """Epoch milliseconds, ISO 8601 (UTC if no zone is given) or an RFC 5322 date."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("expected epoch milliseconds or a date")
        if isinstance(value, int | float):
            return int(value)
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{text[:40]!r} is not a date (ISO 8601 or epoch ms)") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)

    @field_validator("received_at")
    @classmethod
    def _in_range(cls, value: int | None) -> int | None:
        if value is not None and not -(2**63) <= value < 2**63:
            raise ValueError("out of range")
        return value


def _from_row(row: dict[str, Any], *, source: str, where: str) -> dict[str, Any]:
    """A FeedbackEmail from a row of a table; ``body`` and ``from`` stand for ``body_text``
    and ``sender``. Blank fields are left out: a blank message id is generated, as a
    missing one is, so blank rows do not share one key."""
    given = {
        k: v for k, v in row.items() if v is not None and not (isinstance(v, str) and not v.strip())
    }
    for short, name in (("body", "body_text"), ("from", "sender")):
        if short in given:
            given.setdefault(name, given[short])
    given.setdefault("source", source)
    try:
        record = _Row.model_validate(given).model_dump()
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"])
        raise IngestError(f"{where}: {field}: {problem['msg']}") from exc
    record["message_id"] = record["message_id"].strip() or generated_id(
        record["sender"], record["subject"], record["body_text"]
    )
    if record["received_at"] is None:
        record["received_at"] = int(time.time() * 1000)
    clean: dict[str, Any] = encodable(record)
    return clean


READERS = {
    ".eml": read_eml,
    ".mbox": read_mbox,
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
}


def read_emails(path: Path, *, _seen: set[Path] | None = None) -> Iterator[dict[str, Any]]:
    """Every email in ``path``, by its extension (a folder: every file in it, each folder
    read once however links loop)."""
    if path.is_dir():
        seen = set() if _seen is None else _seen
        if (real := path.resolve()) in seen:
            return
        seen.add(real)
        try:
            children = sorted(path.iterdir())
        except OSError as exc:
            raise IngestError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
        for child in children:
            if child.suffix.lower() in READERS:
                yield from read_emails(child, _seen=seen)
        return
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(f"{path}: unknown format; use {', '.join(sorted(READERS))}")
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    yield from reader(path)
