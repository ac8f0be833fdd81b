"""Escalate: auto-send or hand to a person, with the reason.

In order: a reason proposed upstream (join_timeout, low_quality, model_unavailable,
budget_exceeded); critical urgency; policy flags (a legal threat, a breach, a refund above
the limit); a category confidence below the threshold; no draft. Otherwise auto-send.
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


def decide(request: EscalationRequest, *, policy: Policy = Policy()) -> EscalationDecision:
    if request.proposed_reason:
        return EscalationDecision(False, request.proposed_reason, "proposed upstream")
    if request.urgency == "critical":
        return EscalationDecision(False, "critical_urgency", ", ".join(request.cues))
    if "legal_threat" in request.cues:
        return EscalationDecision(False, "policy_legal_threat", "legal threat in the email")
    if "breach" in request.cues:
        return EscalationDecision(False, "policy_security", "possible breach or fraud")
    for item in request.action_items:
        if item.kind == "refund" and item.amount is not None and item.amount > policy.refund_limit:
            return EscalationDecision(
                False,
                "policy_refund_limit",
                f"refund {item.amount:.2f} over the {policy.refund_limit:.2f} limit",
            )
    if request.confidence is None or request.confidence < policy.min_confidence:
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
