"""The reply checks' fast paths find exactly what their patterns find, on real email and
on text made to trip them: a check that got faster and looser would send what it must
not."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from processors.containment import AMOUNT, EMAIL, _amount_matches
from processors.grounding import _squash
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


@pytest.mark.parametrize("text", TRICKY)
def test_fast_paths_match_the_patterns_on_text_made_to_trip_them(text: str) -> None:
    check(text)
    check(text * 3)


def test_fast_paths_match_the_patterns_on_real_email(real: list[str]) -> None:
    assert len(real) >= 1000
    for text in real:
        check(text)
    # the amounts are really there to be found, in most of them
    assert sum(1 for t in real if any(_amount_matches(t))) > len(real) // 4
