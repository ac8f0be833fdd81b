"""Quality: a score in 0..1 and the criteria a draft failed, with feedback for a revision.

Criteria (weights): greeting (0.1), sign-off (0.1), length within bounds (0.2), no unfilled
placeholder (0.2), no phrase banned by the brand guidelines (0.2), no other customer's
data (0.2). Whether the reply is relevant to the email and grounded in what the email and
the vetted answers state is not weighed here: those are gates the reply stage applies on
top (``processors.grounding``), whatever model wrote the draft or scored it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources

from processors.models import QualityRequest, QualityResult

MODEL_NAME = "quality-rules"
WEIGHTS = {
    "greeting": 0.1,
    "sign_off": 0.1,
    "length": 0.2,
    "placeholder": 0.2,
    "brand": 0.2,
    "privacy": 0.2,
}
MIN_WORDS, MAX_WORDS = 12, 300
GREETING = re.compile(
    r"^\s*(dear|hello|hi|good (morning|afternoon)|guten tag|hallo|liebe|lieber|bonjour|"
    r"hola|estimad[oa]|buongiorno|gentile|beste|geachte)\b",
    re.I,
)
SIGN_OFF = re.compile(
    r"\b(regards|sincerely|best wishes|thank you|grüße|gruß|cordialement|saludos|"
    r"cordiali saluti|groeten),?\s*\n\s*\S+",
    re.I,
)
PLACEHOLDER = re.compile(
    r"\{[^}]*\}|\[\[|\]\]|\[(name|company|phone|email)\]|<(name|tel_num|acc_num|email)>|"
    r"\bXXX+\b|TODO",
    re.I,
)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
REFERENCE = re.compile(r"\b(?:INV|ACC|ORD|TKT)-\d{3,}\b")


def brand_phrases() -> tuple[str, ...]:
    text = resources.files("processors.data").joinpath("brand_guidelines.txt").read_text()
    return tuple(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check(
    request: QualityRequest,
    *,
    banned: Iterable[str] = (),
    greeting: bool = True,
    sign_off: bool = True,
) -> QualityResult:
    """``greeting``/``sign_off``: whether the brand wants them (it may send its vetted
    answers as they were written)."""
    draft = request.draft
    failed: list[str] = []
    feedback: list[str] = []
    if greeting and not GREETING.match(draft):
        failed.append("greeting")
        feedback.append("start with a greeting")
    if sign_off and not SIGN_OFF.search(draft):
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
    own = {request.customer_email.lower(), *(a.lower() for a in request.allowed)}
    refs = {i.account_ref for i in request.action_items if i.account_ref}
    foreign = [e for e in EMAIL.findall(draft) if e.lower() not in own]
    foreign += [r for r in REFERENCE.findall(draft) if r not in refs]
    if foreign:
        failed.append("privacy")
        feedback.append("remove data that is not this customer's")
    score = round(1.0 - sum(WEIGHTS[name] for name in failed), 4)
    return QualityResult(score=max(score, 0.0), failed=tuple(failed), feedback=tuple(feedback))
