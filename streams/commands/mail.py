"""An email's bytes as a FeedbackEmail (a dict of the Avro shape): RFC 5322 with its
MIME parts, HTML read as text, and every header or structure the standard library's parser
cannot read kept as written, so one broken email is never lost.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import re
import time
from email.header import decode_header, make_header
from email.message import EmailMessage, Message, MIMEPart
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from topics.codec import encodable

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
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:32]
    return f"<{digest}@mailroom.generated>"


#: the longest header value read, in characters: the standard parser's time grows faster
#: than a header's length (a Subject of 40,000 encoded-words, 546 KB, took 26 s to read)
MAX_HEADER = 16 * 1024


class _Policy(email.policy.EmailPolicy):
    """The standard policy, with each header value cut to ``MAX_HEADER`` before parsing."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_HEADER:
            value = value[:MAX_HEADER]
        return super().header_fetch_parse(name, value)


POLICY = _Policy()


def _header(msg: Message, name: str) -> str | None:
    """A header's value; one the parser cannot read is kept as written, unfolded, its
    encoded-words decoded where they can be."""
    try:
        value = msg[name] if msg.policy is POLICY else None
    # the structured-header parser raises more than HeaderParseError: ``From: "`` raises
    # IndexError, ``To: a:b@;`` AttributeError, a domain literal cut short UnboundLocalError
    except Exception:
        pass
    else:
        if value is not None or msg.policy is POLICY:
            return None if value is None else str(value)
    raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return None
    written = _FOLD.sub(" ", str(raw)[:MAX_HEADER])
    try:
        return str(make_header(decode_header(written)))
    except Exception:  # an encoded-word in a charset Python does not know, broken base64
        return written


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _bodies(msg: EmailMessage) -> tuple[str, str | None, list[dict[str, Any]]]:
    """(text, html, attachments) of a message whose MIME structure the parser reads."""
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
    return body_text, body_html, attachments


def _plain_bodies(msg: Message) -> tuple[str, str | None, list[dict[str, Any]]]:
    """(text, html, attachments) of a message read without the structured headers."""
    texts: dict[str, list[str]] = {"text/plain": [], "text/html": []}
    attachments = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        kind = part.get_content_type()
        if kind in texts and part.get_filename() is None:
            texts[kind].append(_decoded(data, part.get_content_charset()))
        else:
            attachments.append(
                {
                    "filename": str(part.get_filename() or "unnamed"),
                    "content_type": kind,
                    "size_bytes": len(data),
                }
            )
    body_html = "\n".join(texts["text/html"]) or None
    body_text = "\n".join(texts["text/plain"]) or html_to_text(body_html or "")
    return body_text, body_html, attachments


def _decoded(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", "replace")


def from_bytes(raw: bytes, *, source: str) -> dict[str, Any]:
    """A FeedbackEmail from the bytes of an RFC 5322 message (multipart, HTML, attachments).
    A header or a MIME structure the standard parser cannot read is read as written: one
    broken email is not lost, and does not stop the mailbox it is in."""
    msg: Message
    try:
        msg = email.message_from_bytes(raw, policy=POLICY)
        assert isinstance(msg, EmailMessage)
        body_text, body_html, attachments = _bodies(msg)
    # as in _header: what a Content-Type or Content-Disposition the parser cannot read
    # raises, whether it reads it to find the parts or to find the body
    except Exception:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        body_text, body_html, attachments = _plain_bodies(msg)
    try:
        received = int(parsedate_to_datetime(_header(msg, "Date") or "").timestamp() * 1000)
    except (TypeError, ValueError, OverflowError):
        received = int(time.time() * 1000)
    subject = _header(msg, "Subject") or ""
    sender = _header(msg, "From") or ""
    message_id = (_header(msg, "Message-ID") or "").strip()
    record = {
        "message_id": message_id or generated_id(sender, subject, body_text),
        "received_at": received,
        "sender": sender,
        "recipient": _header(msg, "To") or "",
        "subject": subject,
        "body_text": body_text.strip(),
        "body_html": body_html,
        "headers": {h: v for h in KEPT_HEADERS if (v := _header(msg, h)) is not None},
        "in_reply_to": _header(msg, "In-Reply-To") or None,
        "attachments": attachments,
        "source": source,
    }
    clean: dict[str, Any] = encodable(record)
    return clean
