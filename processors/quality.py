"""Quality: a score in 0..1 and the criteria a draft failed, with feedback for a revision.

Criteria (weights): every action item addressed (0.35), greeting (0.1), sign-off (0.1),
length within bounds (0.15), no unfilled placeholder (0.1), no phrase banned by the brand
guidelines (0.1), no other customer's data (0.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources

from processors.generate import ITEM_LINES
from processors.models import QualityRequest, QualityResult

MODEL_NAME = "quality-rules"
WEIGHTS = {
    "action_items": 0.35,
    "greeting": 0.1,
    "sign_off": 0.1,
    "length": 0.15,
    "placeholder": 0.1,
    "brand": 0.1,
    "privacy": 0.1,
}
MIN_WORDS, MAX_WORDS = 20, 120
GREETING = re.compile(r"^\s*(dear|hello|hi|good (morning|afternoon))\b", re.I)
SIGN_OFF = re.compile(r"\b(regards|sincerely|best wishes|thank you),?\s*\n\s*\S+", re.I)
PLACEHOLDER = re.compile(r"\{[^}]*\}|\[\[|\]\]|<(name|tel_num|acc_num|email)>|\bXXX+\b|TODO")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
REFERENCE = re.compile(r"\b(?:INV|ACC|ORD|TKT)-\d{3,}\b")


def brand_phrases() -> tuple[str, ...]:
    text = resources.files("processors.data").joinpath("brand_guidelines.txt").read_text()
    return tuple(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def _item_addressed(kind: str, draft: str) -> bool:
    marker = ITEM_LINES.get(kind, "")
    anchor = {
        "refund": "refund",
        "cancel": "cancellation",
        "invoice": "invoice",
        "fix": "engineers",
        "update_account": "updated your account",
        "feature": "feature",
        "callback": "call you",
    }.get(kind, marker[:20])
    return anchor.lower() in draft.lower()


def check(request: QualityRequest, *, banned: Iterable[str] = ()) -> QualityResult:
    draft = request.draft
    failed: list[str] = []
    feedback: list[str] = []
    missing = [i.kind for i in request.action_items if not _item_addressed(i.kind, draft)]
    if missing:
        failed.append("action_items")
        feedback.extend(f"address action item: {kind}" for kind in missing)
    if not GREETING.match(draft):
        failed.append("greeting")
        feedback.append("start with a greeting")
    if not SIGN_OFF.search(draft):
        failed.append("sign_off")
        feedback.append("end with a sign-off")
    words = len(draft.split())
    if not MIN_WORDS <= words <= MAX_WORDS:
        failed.append("length")
        feedback.append("shorten the reply" if words > MAX_WORDS else "say more")
    if PLACEHOLDER.search(draft):
        failed.append("placeholder")
        feedback.append("fill every placeholder")
    lowered = draft.lower()
    used = [phrase for phrase in banned if phrase in lowered]
    if used:
        failed.append("brand")
        feedback.extend(f"avoid the phrase: {p}" for p in used)
    own = request.customer_email.lower()
    refs = {i.account_ref for i in request.action_items if i.account_ref}
    foreign = [e for e in EMAIL.findall(draft) if e.lower() != own]
    foreign += [r for r in REFERENCE.findall(draft) if r not in refs]
    if foreign:
        failed.append("privacy")
        feedback.append("remove data that is not this customer's")
    score = round(1.0 - sum(WEIGHTS[name] for name in failed), 4)
    return QualityResult(score=max(score, 0.0), failed=tuple(failed), feedback=tuple(feedback))
