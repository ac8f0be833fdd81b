"""Urgency and sentiment: VADER's compound score plus urgency cues -> critical..low.

Cues: outage, legal threat, security breach, deadline, cancellation, repeated contact,
shouting (mostly capital letters, or "!!!"). Critical: an outage, a legal threat or a
breach, or shouting in a clearly negative email. High: a deadline, a cancellation threat,
repeated contact, or very negative sentiment. Medium: negative or any cue. Low otherwise.
"""

from __future__ import annotations

import re
from typing import Protocol

from processors.models import UrgencyResult

MODEL_NAME = "vader-cues"

CUES: dict[str, re.Pattern[str]] = {
    "outage": re.compile(
        r"\b(outage|(is|are|went|completely) down|production is (completely )?broken"
        r"|whole team is down|nothing works|losing (money|customers))\b",
        re.I,
    ),
    "legal_threat": re.compile(
        r"\b(lawyer|attorney|legal action|sue you|lawsuit|court|small claims|ombudsman"
        r"|regulator|cfpb|chargeback)\b",
        re.I,
    ),
    "breach": re.compile(
        r"\b(data breach|breach|hacked|stolen|fraud(ulent)?|unauthori[sz]ed"
        r"|other customers'? (data|invoices))\b",
        re.I,
    ),
    "deadline": re.compile(
        r"\b(deadline|by tomorrow|by (monday|tuesday|wednesday|thursday|friday)|today"
        r"|within 24 hours|asap|as soon as possible|urgent(ly)?)\b",
        re.I,
    ),
    "cancellation": re.compile(
        r"\b(cancel (my|our|the) (subscription|account|contract)|will cancel|switch(ing)? to"
        r" (a |another )?competitor|close my account)\b",
        re.I,
    ),
    "repeated_contact": re.compile(
        r"\b((second|third|fourth|fifth) time|again and again|still no (answer|reply|response)"
        r"|nobody (has )?(answered|replied|responded)|contacted you (several|many) times)\b",
        re.I,
    ),
}
#: Words that make a breach a question about prevention, not an incident ("what measures
#: do you take to prevent data breaches and unauthorized access?").
PREVENTION = re.compile(
    r"\b(prevent\w*|avoid\w*|against|protect\w*|safeguard\w*|measures|protocols?|"
    r"polic(y|ies)|risks? of|compliance|secure|securing)\b",
    re.I,
)
CRITICAL_CUES = {"outage", "legal_threat", "breach"}
HIGH_CUES = {"deadline", "cancellation", "repeated_contact"}
CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
WORD = re.compile(r"\b[A-Za-z]{3,}\b")


class SentimentModel(Protocol):
    def polarity_scores(self, text: str) -> dict[str, float]: ...


def shouting(text: str) -> bool:
    words = WORD.findall(text)
    caps = CAPS_WORD.findall(text)
    return "!!!" in text or (len(caps) >= 4 and len(caps) >= 0.3 * len(words))


def score_urgency(subject: str, body: str, *, sentiment: SentimentModel) -> UrgencyResult:
    text = f"{subject}\n{body}"
    compound = float(sentiment.polarity_scores(text)["compound"])
    cues = [name for name, pattern in CUES.items() if pattern.search(text)]
    if "breach" in cues and not any(
        not PREVENTION.search(text[max(0, m.start() - 60) : m.start()])
        for m in CUES["breach"].finditer(text)
    ):
        cues.remove("breach")
    if shouting(text):
        cues.append("shouting")
    found = set(cues)
    if found & CRITICAL_CUES or ("shouting" in found and compound < -0.5):
        level = "critical"
    elif found & HIGH_CUES or compound < -0.6:
        level = "high"
    elif found or compound < -0.05:
        level = "medium"
    else:
        level = "low"
    return UrgencyResult(level=level, sentiment=compound, cues=tuple(cues))
