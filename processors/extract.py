"""Extract: action items, with amounts, dates and account references, by rules.

Each sentence that asks for something becomes one action item of a kind (refund, cancel,
fix, update_account, invoice, feature, callback); the amounts, dates and references found
in that sentence travel with it.
"""

from __future__ import annotations

import re

from processors.models import ActionItem

MODEL_NAME = "extract-rules"

MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
AMOUNT = re.compile(
    r"(?P<cur>[$€£]|\b(?:EUR|USD|GBP)\b)\s?(?P<amt>\d{1,3}(?:[,\d]{0,12})(?:\.\d{1,2})?)"
    r"|(?P<amt2>\d{1,3}(?:[,\d]{0,12})(?:\.\d{1,2})?)\s?(?P<cur2>EUR|USD|GBP|euros?|dollars?)\b",
    re.I,
)
DATE = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}(?:st|nd|rd|th)? {MONTH}\b|{MONTH} \d{{1,2}}\b"
    r"|today|tomorrow|next week|(?:by |on )?(?:monday|tuesday|wednesday|thursday|friday))",
    re.I,
)
REFERENCE = re.compile(
    r"\b((?:INV|ACC|ORD|TKT)-\d{3,}|order #?\d{4,}|card ending \d{4}"
    r"|account (?:no\.? |number )?\d{5,})\b",
    re.I,
)
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "refund",
        re.compile(
            r"\b(refund|charged twice|money back|credit (of|me)|reimburse"
            r"|double charge|processed twice)\b",
            re.I,
        ),
    ),
    (
        "cancel",
        re.compile(
            r"\b(cancel|close (my|our) account|delete (my|our) account"
            r"|terminate)\b",
            re.I,
        ),
    ),
    ("invoice", re.compile(r"\b(invoice|receipt|billing address|vat)\b", re.I)),
    (
        "fix",
        re.compile(
            r"\b(crash\w*|error|not working|fails?|failed|broken|bug|freez\w+"
            r"|blank screen|times? out|disappeared|hangs?|slow)\b",
            re.I,
        ),
    ),
    (
        "update_account",
        re.compile(
            r"\b(change|update|unlock|reset|merge|transfer ownership"
            r"|add (two|more|\d+) users?|downgrade|upgrade|log in"
            r"|password)\b",
            re.I,
        ),
    ),
    (
        "feature",
        re.compile(
            r"\b(would be great|please add|could you add|feature|suggest\w*"
            r"|would love|support for|consider adding)\b",
            re.I,
        ),
    ),
    ("callback", re.compile(r"\b(call me|phone me|give me a call|call back)\b", re.I)),
)
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _amount(match: re.Match[str]) -> tuple[float, str]:
    raw = (match["amt"] or match["amt2"]).replace(",", "")
    symbol = (match["cur"] or match["cur2"] or "").upper()
    currency = {
        "$": "USD",
        "€": "EUR",
        "£": "GBP",
        "EURO": "EUR",
        "EUROS": "EUR",
        "DOLLAR": "USD",
        "DOLLARS": "USD",
    }.get(symbol, symbol)
    return float(raw), currency


def extract(subject: str, body: str) -> tuple[ActionItem, ...]:
    items: list[ActionItem] = []
    seen: set[str] = set()
    for sentence in SENTENCE.split(f"{subject}.\n{body}"):
        sentence = sentence.strip()
        if not sentence:
            continue
        for kind, pattern in KINDS:
            if not pattern.search(sentence) or kind in seen:
                continue
            seen.add(kind)
            amount = AMOUNT.search(sentence)
            value, currency = _amount(amount) if amount else (None, None)
            date = DATE.search(sentence)
            ref = REFERENCE.search(sentence)
            items.append(
                ActionItem(
                    kind=kind,
                    text=sentence[:200],
                    amount=value,
                    currency=currency,
                    due=date.group(0) if date else None,
                    account_ref=ref.group(0) if ref else None,
                )
            )
            break
    return tuple(items)
