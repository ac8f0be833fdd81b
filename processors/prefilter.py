"""Prefilter: drop what no model should be spent on, with the reason; keep the rest.

Auto-replies (RFC 3834 ``Auto-Submitted``, vacation responders), bounces (delivery status
notifications), newsletters and bulk mail (``List-Unsubscribe``, ``Precedence: bulk``),
spam-like mail (several spam cues together), and emails with nothing left after quoted
replies and signatures are stripped.
"""

from __future__ import annotations

import re

from processors.models import Email, PrefilterResult

OUT_OF_OFFICE = re.compile(
    r"\b(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|away from (the )?office"
    r"|on (annual )?leave|on vacation|abwesenheitsnotiz|currently unavailable until)\b",
    re.IGNORECASE,
)
BOUNCE_SUBJECT = re.compile(
    r"(undeliver(ed|able)|delivery (status notification|has failed|failure)"
    r"|returned mail|mail delivery (failed|subsystem)|failure notice)",
    re.IGNORECASE,
)
BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)
NEWSLETTER_SUBJECT = re.compile(r"\b(newsletter|weekly digest|webinar invitation)\b", re.I)
SPAM_CUES = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\byou (have|'ve) (won|been selected)\b",
        r"\b(claim|collect) your (prize|reward|winnings)\b",
        r"\b(viagra|cialis|casino|lottery)\b",
        r"\bcrypto(currency)? (giveaway|investment opportunity)\b",
        r"\b100% (free|guaranteed)\b",
        r"\bact now\b",
        r"\b(wire|transfer) (the )?(fee|funds) to (release|claim)\b",
        r"\bclick (here|the link) (below )?to (claim|unlock|verify your (prize|reward))\b",
        r"\bdear (beneficiary|winner)\b",
    )
)
QUOTE_HEADER = re.compile(
    r"^\s*(on .{4,200}wrote:|-{2,}\s*original message\s*-{2,}|from: .+)$", re.IGNORECASE
)
SIGNATURE = re.compile(r"^(--\s*|sent from my \w+.*)$", re.IGNORECASE)
WORD = re.compile(r"[^\W\d_]{2,}")


def strip_quotes(text: str) -> str:
    """The new text of a reply: no quoted lines, no quoted history, no signature."""
    kept = []
    for line in text.splitlines():
        if QUOTE_HEADER.match(line) or SIGNATURE.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _header(email: Email, name: str) -> str:
    for key, value in email.headers.items():
        if key.lower() == name.lower():
            return value.strip()
    return ""


def prefilter(email: Email) -> PrefilterResult:
    """Decide whether an email is worth the models. Pure and cheap."""
    text = strip_quotes(email.body_text)
    auto = _header(email, "Auto-Submitted").lower()
    precedence = _header(email, "Precedence").lower()
    if (
        BOUNCE_SENDER.match(email.sender)
        or BOUNCE_SUBJECT.search(email.subject)
        or ("multipart/report" in _header(email, "Content-Type").lower())
    ):
        return PrefilterResult(False, "bounce", text)
    if (auto and auto != "no") or _header(email, "X-Autoreply") or _header(email, "X-Autorespond"):
        reason = (
            "out_of_office" if OUT_OF_OFFICE.search(email.subject + " " + text) else ("auto_reply")
        )
        return PrefilterResult(False, reason, text)
    if OUT_OF_OFFICE.search(email.subject) or precedence == "auto_reply":
        return PrefilterResult(False, "out_of_office", text)
    if (
        _header(email, "List-Unsubscribe")
        or _header(email, "List-Id")
        or precedence
        in (
            "bulk",
            "list",
            "junk",
        )
        or NEWSLETTER_SUBJECT.search(email.subject)
    ):
        return PrefilterResult(False, "newsletter", text)
    spam_hits = sum(1 for cue in SPAM_CUES if cue.search(email.subject + "\n" + text))
    if spam_hits >= 2:
        return PrefilterResult(False, "spam_like", text)
    if len(WORD.findall(text)) < 2:
        return PrefilterResult(False, "empty_after_quote_stripping", text)
    return PrefilterResult(True, "accepted", text)
