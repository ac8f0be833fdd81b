"""Read emails from the files a user has: .eml, .mbox, JSON lines, CSV (subject, body).

Each yields ``FeedbackEmail`` records (dicts of the Avro shape). A file that cannot be
read raises ``IngestError`` naming the file and, for line formats, the line.
"""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import html
import json
import mailbox
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage, MIMEPart
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from streams.errors import IngestError

#: Headers the prefilter reads; the rest stay out of the pipeline.
KEPT_HEADERS = (
    "Auto-Submitted",
    "Precedence",
    "List-Unsubscribe",
    "List-Id",
    "X-Autoreply",
    "X-Autorespond",
    "Content-Type",
    "Reply-To",
)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


#: what the fallback reads tags by; no pattern reads past the next "<" or ">", so each
#: character is read once however the markup is broken
_HIDING = re.compile(r"(<!--|-->|</?(?:script|style)\b[^<>]*>?)", re.IGNORECASE)
_BREAK = re.compile(r"<(?:br|p|div|li|tr)\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-z][^<>]*>", re.IGNORECASE)


def _strip_tags(markup: str) -> str:
    """The text of markup the parser rejects: scripts, styles and comments left out,
    line-breaking tags as new lines, other tags cut out, entities decoded."""
    kept: list[str] = []
    comment, hidden = False, 0
    for piece in _HIDING.split(markup):
        lowered = piece[:8].lower()
        if piece == "<!--":
            comment = True
        elif piece == "-->":
            comment = False
        elif comment:
            continue
        elif lowered.startswith(("<script", "<style")):
            hidden += 1
        elif lowered.startswith(("</script", "</style")):
            hidden = max(0, hidden - 1)
        elif not hidden:
            kept.append(piece)
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", "".join(kept))))


def html_to_text(markup: str) -> str:
    """The text of an HTML body. Markup the parser rejects (Python 3.11's raises on a
    stray ``<![``) is read with its tags cut out instead: the email is not lost."""
    parser = _Text()
    try:
        parser.feed(markup)
        # what is left after a tag that never closes is text too; ``close()`` would parse
        # it at a cost quadratic in its length (64 KB of "<a " took 32 s)
        text = "".join(parser.parts) + _strip_tags(parser.rawdata)
    except (AssertionError, ValueError):
        text = _strip_tags(markup)
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _content(part: MIMEPart) -> str:
    """A text part's content; one in a charset Python does not know is read as UTF-8,
    with what does not decode replaced, rather than lose the email."""
    try:
        return str(part.get_content())
    except LookupError:
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""


def generated_id(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    return f"<{digest}@mailroom.generated>"


def from_message(msg: EmailMessage, *, source: str) -> dict[str, Any]:
    """A FeedbackEmail from a parsed RFC 5322 message (multipart, HTML, attachments)."""
    plain = msg.get_body(preferencelist=("plain",))
    markup = msg.get_body(preferencelist=("html",))
    body_html = _content(markup) if markup is not None else None
    if plain is not None:
        body_text = _content(plain)
    elif body_html is not None:
        body_text = html_to_text(body_html)
    else:
        body_text = ""
    attachments = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True) or b""
        attachments.append(
            {
                "filename": part.get_filename() or "unnamed",
                "content_type": part.get_content_type(),
                "size_bytes": len(payload),
            }
        )
    try:
        received = int(parsedate_to_datetime(str(msg["Date"])).timestamp() * 1000)
    except (TypeError, ValueError):
        received = int(time.time() * 1000)
    subject = str(msg.get("Subject", "") or "")
    sender = str(msg.get("From", "") or "")
    return {
        "message_id": str(
            msg.get("Message-ID") or generated_id(sender, subject, body_text)
        ).strip(),
        "received_at": received,
        "sender": sender,
        "recipient": str(msg.get("To", "") or ""),
        "subject": subject,
        "body_text": body_text.strip(),
        "body_html": body_html,
        "headers": {h: str(msg[h]) for h in KEPT_HEADERS if msg[h] is not None},
        "in_reply_to": str(msg["In-Reply-To"]) if msg["In-Reply-To"] else None,
        "attachments": attachments,
        "source": source,
    }


def read_eml(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        msg = email.message_from_binary_file(handle, policy=email.policy.default)
    yield from_message(msg, source="eml")


def read_mbox(path: Path) -> Iterator[dict[str, Any]]:
    box = mailbox.mbox(str(path), factory=None, create=False)
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key)
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            yield from_message(msg, source="mbox")
    finally:
        box.close()


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{path}:{number}: not JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise IngestError(f"{path}:{number}: expected a JSON object per line")
            yield _from_row(row, source="jsonl")


def read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = {f.lower() for f in reader.fieldnames or ()}
        if "body" not in fields and "body_text" not in fields:
            raise IngestError(f"{path}: CSV needs a 'body' column (and optionally 'subject')")
        for row in reader:
            yield _from_row({k.lower(): v for k, v in row.items() if k}, source="csv")


_ROW_FIELDS = (
    "message_id",
    "received_at",
    "sender",
    "recipient",
    "subject",
    "body_text",
    "body_html",
    "headers",
    "in_reply_to",
    "attachments",
    "source",
)


def _from_row(row: dict[str, Any], *, source: str) -> dict[str, Any]:
    body = str(row.get("body_text") or row.get("body") or "")
    subject = str(row.get("subject") or "")
    sender = str(row.get("sender") or row.get("from") or "unknown@customers.invalid")
    record = {k: row[k] for k in _ROW_FIELDS if k in row and row[k] is not None}
    record.update(sender=sender, subject=subject, body_text=body)
    record.setdefault("message_id", generated_id(sender, subject, body))
    record.setdefault("received_at", int(time.time() * 1000))
    record.setdefault("source", source)
    for name, default in (
        ("recipient", ""),
        ("headers", {}),
        ("attachments", []),
        ("body_html", None),
        ("in_reply_to", None),
    ):
        record.setdefault(name, default)
    return record


READERS = {
    ".eml": read_eml,
    ".mbox": read_mbox,
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_jsonl,
    ".csv": read_csv,
}


def read_emails(path: Path) -> Iterator[dict[str, Any]]:
    """Every email in ``path``, by its extension (a folder: every file in it)."""
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.suffix.lower() in READERS:
                yield from read_emails(child)
        return
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise IngestError(f"{path}: unknown format; use {', '.join(sorted(READERS))}")
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    yield from reader(path)
