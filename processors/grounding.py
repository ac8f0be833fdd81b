"""Groundedness: everything a reply states that could be wrong must come from somewhere.

Every link, email address, phone number, number (amounts, dates, durations, references,
error codes), month or weekday, and promise word (refund, credit, discount, ...) in a reply
must appear in the customer's email, in a vetted answer the reply was built on, or among
the company's own details. What does not is a finding; a reply with any is not sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from processors.containment import EMAIL, PHONE, URL

NUMBER = re.compile(r"(?<![\w.,])[\w-]*\d(?:[\w-]|[.,]\d)*")
CALENDAR = re.compile(
    r"\b(?:january|february|march|april|may|june|july|august|september|october|november|"
    r"december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight)\b",
    re.IGNORECASE,
)
PROMISES = re.compile(
    r"\b(?:refund|credit|reimburs|compensat|discount|voucher|free of charge|waive|"
    r"guarantee|money back|replacement|upgrade at no)\w*",
    re.IGNORECASE,
)


def _squash(text: str) -> str:
    """``text`` lowered, without whitespace, dots and commas: ``re.sub(r"[\\s.,]+", "",
    text.lower())`` in string methods (``str.split()`` splits on exactly what ``\\s``
    matches), at a fraction of the cost; every draft is checked on the hot path."""
    return "".join(text.lower().split()).replace(".", "").replace(",", "")


def ungrounded(
    reply: str, *, email_text: str, sources: Iterable[str] = (), allowed: Iterable[str] = ()
) -> list[str]:
    """What ``reply`` states that neither the email, the answers it was built on, nor the
    company's own details (``allowed``) state; empty when everything is grounded."""
    pool = "\n".join([email_text, *sources, *allowed]).lower()
    squashed = _squash(pool)
    findings: list[str] = []
    seen: set[str] = set()

    def check(kind: str, found: str, present: bool) -> None:
        if not present and found.lower() not in seen:
            seen.add(found.lower())
            findings.append(f"{kind} neither the email nor the answer states: {found[:60]}")

    numbers = {n.strip("-").lower() for n in NUMBER.findall(pool)}
    numbers |= {_squash(n) for n in numbers}
    covered: list[tuple[int, int]] = []
    for pattern, kind in ((URL, "a link"), (EMAIL, "an address"), (PHONE, "a phone number")):
        if pattern is EMAIL and "@" not in reply:
            continue  # every address has one (and the pattern is slow to find none)
        for match in pattern.finditer(reply):
            covered.append(match.span())
            text = match.group().strip()
            check(kind, text, text.lower() in pool or _squash(text) in squashed)
    for match in NUMBER.finditer(reply):
        if any(start <= match.start() < end for start, end in covered):
            continue
        text = match.group().strip("-")
        check("a number", text, text.lower() in numbers or _squash(text) in numbers)
    for match in CALENDAR.finditer(reply):
        check("a date", match.group(), match.group().lower() in pool)
    for match in PROMISES.finditer(reply):
        stem = match.group().lower()[:6]
        check("a promise", match.group(), stem in pool)
    return findings
