"""Groundedness: everything a reply states that could be wrong must come from somewhere.

Every link, email address, phone number, number (amounts, dates, durations, references,
error codes), month or weekday, and promise word (refund, credit, discount, ...) in a reply
must appear in the customer's email, in a vetted answer the reply was built on, or among
the company's own details. What does not is a finding; a reply with any is not sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from processors.containment import _DIGIT, EMAIL, PHONE, links

#: a number: a run of word characters and hyphens with a digit in it, then on through
#: further such runs joined by "." or "," before a digit ("v2.1-rc3", "1,250.00", "-15").
#: It starts at a run's start or after a hyphen, never right after a word character, "."
#: or ",". The pattern states what is found; ``number_spans`` finds it (see there).
NUMBER = re.compile(r"(?<![\w.,])[\w-]*\d(?:[\w-]|[.,]\d)*")
#: NUMBER where it starts at a run's start, which is every match but one after a hyphen
#: (a digit run found by possessive steps: each run is read once)
_AT_RUN = re.compile(r"(?<![\w.,-])[^\W\d]*+(?:-[^\W\d]*+)*+\d(?:[\w-]|[.,]\d)*+")
#: "." or "," and a run after it with a digit after a hyphen: there, and only there, a
#: match may start after a hyphen (".5-a1" holds "a1")
_AFTER_HYPHEN = re.compile(r"[.,]\w*+-[\w-]*?\d")
#: a run holding a digit, with every run joined on by [.,]\d, after "." or "," too
_TOKEN = re.compile(r"(?<![\w-])[^\W\d]*+(?:-[^\W\d]*+)*+\d(?:[\w-]|[.,]\d)*+")
_RUN = re.compile(r"[\w-]+")

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


def number_spans(text: str) -> list[tuple[int, int]]:
    """Where ``NUMBER.finditer(text)`` finds its matches, in time linear in ``len(text)``.

    The pattern itself is quadratic: after a hyphen it may start again, so on a run of
    hyphens or hyphenated words without a digit it tries every hyphen and reads the rest
    of the run each time (200,000 hyphens in an email took nine minutes). Here each run is
    read once. A match starts at a run's start (``_AT_RUN``) unless the run follows "." or
    "," and a digit follows one of its hyphens; only then are runs read one by one."""
    if _AFTER_HYPHEN.search(text) is None:
        return [match.span() for match in _AT_RUN.finditer(text)]
    return _spans_run_by_run(text)


def numbers(text: str) -> list[str]:
    """``NUMBER.findall(text)``, as ``number_spans`` finds it."""
    if _AFTER_HYPHEN.search(text) is None:
        return _AT_RUN.findall(text)
    return [text[start:end] for start, end in _spans_run_by_run(text)]


def _spans_run_by_run(text: str) -> list[tuple[int, int]]:
    """A run holding a digit not right after "." or "," starts a match; one right after
    them holds one from the first of its hyphens a digit follows, if any; either ends
    where it ends."""
    spans = []
    for token in _TOKEN.finditer(text):
        start, end = token.span()
        if start and text[start - 1] in ".,":
            for run in _RUN.finditer(text, start, end):
                hyphen = text.find("-", run.start(), run.end())
                if hyphen >= 0 and _DIGIT.search(text, hyphen + 1, run.end()):
                    spans.append((hyphen + 1, end))
                    break
        else:
            spans.append((start, end))
    return spans


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

    stated = {n.strip("-") for n in numbers(pool)}
    stated |= {_squash(n) for n in stated}
    covered: list[tuple[int, int]] = []
    found = [(span, text, "a link") for span, text in links(reply)]
    for pattern, kind in ((EMAIL, "an address"), (PHONE, "a phone number")):
        if pattern is EMAIL and "@" not in reply:
            continue  # every address has one (and the pattern is slow to find none)
        found += [(m.span(), m.group(), kind) for m in pattern.finditer(reply)]
    for span, text, kind in found:
        covered.append(span)
        text = text.strip()
        check(kind, text, text.lower() in pool or _squash(text) in squashed)
    for first, last in number_spans(reply):
        if any(start <= first < end for start, end in covered):
            continue
        text = reply[first:last].strip("-")
        check("a number", text, text.lower() in stated or _squash(text) in stated)
    for match in CALENDAR.finditer(reply):
        check("a date", match.group(), match.group().lower() in pool)
    for match in PROMISES.finditer(reply):
        stem = match.group().lower()[:6]
        check("a promise", match.group(), stem in pool)
    return findings
