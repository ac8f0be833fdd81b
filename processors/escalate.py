"""Escalate: auto-send or hand to a person, with the reason.

In order: a reason proposed upstream (join_timeout, low_quality, model_unavailable,
budget_exceeded, no_grounded_answer, unsupported_language); an urgency level that goes to a
person (critical by default); policy flags (a legal threat, a breach, a category that
always goes to a person, a refund above the limit); a category confidence below the
floor, unless the reply is built on a vetted answer at least ``sure_relevance`` relevant
to the email; no draft. Otherwise auto-send. (The escalate stage adds what code checks
last: a reply that is unsafe, ungrounded, or for a sender that is not one address,
``no_reply_address``.)
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.models import EscalationDecision, EscalationRequest

MODEL_NAME = "escalation-policy"


@dataclass(frozen=True)
class Policy:
    min_confidence: float = 0.8
    refund_limit: float = 500.0
    min_draft_score: float = 0.7
    always_human: tuple[str, ...] = ()
    to_person: tuple[str, ...] = ("critical",)
    #: a vetted answer this relevant to the email is evidence enough of what it is about,
    #: whatever the classifier's confidence (None: the floor always applies)
    sure_relevance: float | None = None


def decide(request: EscalationRequest, *, policy: Policy = Policy()) -> EscalationDecision:
    if request.proposed_reason:
        return EscalationDecision(False, request.proposed_reason, "proposed upstream")
    if request.urgency is not None and request.urgency in policy.to_person:
        return EscalationDecision(False, f"{request.urgency}_urgency", ", ".join(request.cues))
    if "legal_threat" in request.cues:
        return EscalationDecision(False, "policy_legal_threat", "legal threat in the email")
    if "breach" in request.cues:
        return EscalationDecision(False, "policy_security", "possible breach or fraud")
    if request.category in policy.always_human:
        return EscalationDecision(
            False, "policy_category", f"{request.category} always goes to a person"
        )
    for item in request.action_items:
        if item.kind == "refund" and item.amount is not None and item.amount > policy.refund_limit:
            return EscalationDecision(
                False,
                "policy_refund_limit",
                f"refund {item.amount:.2f} over the {policy.refund_limit:.2f} limit",
            )
    sure = (
        policy.sure_relevance is not None
        and request.relevance is not None
        and request.relevance >= policy.sure_relevance
    )
    if not sure and (request.confidence is None or request.confidence < policy.min_confidence):
        return EscalationDecision(
            False,
            "low_confidence",
            f"category {request.category} at {request.confidence or 0.0:.2f} "
            f"< {policy.min_confidence:.2f}",
        )
    if request.draft_score is None:
        return EscalationDecision(False, "no_draft", "nothing to send")
    if request.draft_score < policy.min_draft_score:
        return EscalationDecision(False, "low_quality", f"best draft {request.draft_score:.2f}")
    return EscalationDecision(True, "auto_send", f"draft score {request.draft_score:.2f}")
