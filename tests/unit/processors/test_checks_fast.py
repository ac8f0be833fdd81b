"""The reply checks' fast paths find exactly what their patterns find, on real email and
on text made to trip them: a check that got faster and looser would send what it must
not."""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from pathlib import Path

import pytest

from processors.containment import (
    AMOUNT,
    EMAIL,
    LAST_LABEL,
    URL,
    ReplyPolicy,
    _amount_matches,
    check_reply,
)
from processors.grounding import NUMBER, _squash, number_spans, numbers, ungrounded
from processors.language import WORDS, detect

TRICKY = [
    "",
    "7",
    "no digits here at all",
    "USD 5, usd5, USD\u00a012, USD  12, 12USD, CHF-5, abcUSD 12",
    "$1,234.56 and 7 EUR; £12.5 5 £; x\u20ac 3; 1.234,50 EUR; 5 000 dollars",
    "1234567 12345678901234567890 0.5 .5 5. 5,-",
    "\u0661\u0662\u0663 EUR (Arabic-Indic digits), \uff11\uff12 USD (full-width)",
    "\u017f 9 \u212a 10 EUR  tabs\tand\u2003em\u2009spaces\u00a0and\u3000ideographic",
    "refund of $50.00\n\nUSD\n100\r\nEUR\x0b7\x0c8\x1c9\x1d1\x1e2\x1f3\x855",
    "a@b.c no-at-sign@ @ user@@host user@host.example, first.last+tag@sub.example.org",
    "DE DIE das und ist nicht ICH sie zu den the AND to of a in is you",
]


#: The link and address patterns before their lengths were bounded: on everything with
#: labels of at most 63 characters they must find the same.
UNBOUNDED_URL = re.compile(
    r"\b(?:(?:https?|ftp)://|www\.)[^\s<>()\"']+"
    rf"|\b(?:[\w-]+\.)+{LAST_LABEL}"
    r"\b(?:/[^\s<>()\"']*)?",
    re.IGNORECASE,
)
#: a run of label characters longer than a host label may be (a narrative with no spaces)
LONG_LABEL = re.compile(r"[\w-]{64}")
UNBOUNDED_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
LINKS = [
    "see https://example.com/a?b=c, www.shop.example.co.uk/x or mail.example.org.",
    "...example.com and .example.net, _x.com, \u00e9-b.com, a.com.b.com, a.company, a.co-op",
    "write to first.last+tag@sub.example.org, a@b.c@d.e, a@b.c+d@e.f, a@b.c.@d.e, x@y",
    "xn--bcher-kva.example, EXAMPLE.COM/Path, ftp://files.example.io/x.tar.gz, www.",
]


def texts(shared_data: Path, count: int = 600) -> list[str]:
    """Email bodies and agents' answers from the tickets, and CFPB complaint narratives."""
    csv.field_size_limit(1 << 26)
    found: list[str] = []
    tickets = shared_data / "tobi_bueck_customer_support_tickets" / "tickets_v4_en.csv"
    with tickets.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            found += [row["body"] or "", row["answer"] or ""]
            if len(found) >= count:
                break
    complaints = shared_data / "cfpb_consumer_complaints" / "cfpb_complaints_with_narratives.csv"
    with complaints.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        column = next(c for c in reader.fieldnames or () if "narrative" in c.lower())
        for row in reader:
            found.append(row[column] or "")
            if len(found) >= 2 * count:
                break
    return found


@pytest.fixture
def real(shared_data: Path) -> list[str]:
    return texts(shared_data)


def detect_by_language(text: str) -> str | None:
    """``detect`` as it was: every token looked up language by language."""
    counts: Counter[str] = Counter()
    for token in re.findall(r"[^\W\d_]+", text.lower()):
        for lang, words in WORDS.items():
            if token in words:
                counts[lang] += 1
    if not counts:
        return None
    (best, hits), *rest = counts.most_common()
    runner_up = rest[0][1] if rest else 0
    return None if hits < 4 or hits < 1.5 * runner_up else best


def check(text: str) -> None:
    found = [(m.span(), m.group()) for m in _amount_matches(text)]
    assert found == [(m.span(), m.group()) for m in AMOUNT.finditer(text)], text[:80]
    assert _squash(text) == re.sub(r"[\s.,]+", "", text.lower()), text[:80]
    assert detect(text) == detect_by_language(text), text[:80]
    if "@" not in text:
        assert EMAIL.findall(text) == []
    assert list(number_spans(text)) == [m.span() for m in NUMBER.finditer(text)], text[:80]
    assert numbers(text) == NUMBER.findall(text), text[:80]
    if not LONG_LABEL.search(text):  # the bounds are what tell them apart there
        assert URL.findall(text) == UNBOUNDED_URL.findall(text), text[:80]
    assert EMAIL.findall(text) == UNBOUNDED_EMAIL.findall(text), text[:80]


@pytest.mark.parametrize("text", TRICKY + LINKS)
def test_fast_paths_match_the_patterns_on_text_made_to_trip_them(text: str) -> None:
    check(text)
    check(text * 3)


def test_fast_paths_match_the_patterns_on_real_email(real: list[str]) -> None:
    assert len(real) >= 1000
    for text in real:
        check(text)
    # the amounts are really there to be found, in most of them
    assert sum(1 for t in real if any(_amount_matches(t))) > len(real) // 4


def test_numbers_are_found_where_the_pattern_finds_them_in_every_short_text() -> None:
    # every text of up to six characters over the characters that decide a number's span
    for length in range(1, 7):
        for chars in itertools.product("a1-.,_ ", repeat=length):
            text = "".join(chars)
            assert list(number_spans(text)) == [m.span() for m in NUMBER.finditer(text)], text
            assert numbers(text) == NUMBER.findall(text), text


REPLY = "Hello Anna,\n\nThanks for writing. We will look at order 12345 by Monday.\n\nBest,\nTeam"
HOSTILE = ["-", "a-", "a.", "1.", "1-", ".5-", "_", "1 ", "a@", "@a.", "a1.", "+1 ", "www."]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", HOSTILE)
def test_a_hostile_email_or_reply_is_checked_in_time_linear_in_its_length(unit: str) -> None:
    """Runs of hyphens, dots or hyphenated words made the checks' patterns start again
    at every character and read to the end: an email of 200,000 hyphens stalled the
    grounding check for nine minutes. Now an email of the largest size triage lets in and
    a reply as long as a model might write are each checked in well under a second."""
    email = (unit * (256 * 1024 // len(unit) + 1))[: 256 * 1024]
    reply = (unit * (8000 // len(unit) + 1))[:8000]
    policy = ReplyPolicy(allowed=("example.com",))
    assert ungrounded(REPLY, email_text=email) == [
        f"a {kind} neither the email nor the answer states: {found}"
        for kind, found in (("number", "12345"), ("date", "Monday"))
        if found.lower() not in email.lower()
    ]
    assert check_reply(REPLY, email_text=email, policy=policy) == []
    # a reply made of the run is not sent for what it is; it is checked all the same
    ungrounded(reply, email_text=REPLY)
    check_reply(reply, email_text=REPLY, policy=policy, instructions=reply)
