"""The records processors take and give: frozen dataclasses, one in and one out per step."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Email:
    """What a step may read of an email. Inbound text is data, never instructions."""

    message_id: str
    sender: str
    subject: str
    body_text: str
    headers: dict[str, str] = field(default_factory=dict)
    body_html: str | None = None


@dataclass(frozen=True)
class PrefilterResult:
    accepted: bool
    reason: str
    text: str  # the body with quoted replies and signatures stripped


@dataclass(frozen=True)
class Classification:
    category: str
    confidence: float
    scores: dict[str, float]


@dataclass(frozen=True)
class UrgencyResult:
    level: str
    sentiment: float
    cues: tuple[str, ...]


@dataclass(frozen=True)
class ActionItem:
    kind: str
    text: str
    amount: float | None = None
    currency: str | None = None
    due: str | None = None
    account_ref: str | None = None


@dataclass(frozen=True)
class DraftRequest:
    message_id: str
    category: str
    customer_name: str
    subject: str
    action_items: tuple[ActionItem, ...]
    iteration: int
    temperature: float
    feedback: tuple[str, ...] = ()


@dataclass(frozen=True)
class DraftResult:
    text: str
    sources: tuple[str, ...] = ()  # ids of the vetted answers it is built on
    relevance: float | None = None  # how well they match the email, 0..1


@dataclass(frozen=True)
class QualityRequest:
    draft: str
    action_items: tuple[ActionItem, ...]
    customer_email: str
    customer_name: str
    allowed: tuple[str, ...] = ()  # the company's own addresses, phone, website


@dataclass(frozen=True)
class QualityResult:
    score: float
    failed: tuple[str, ...]
    feedback: tuple[str, ...]


@dataclass(frozen=True)
class EscalationRequest:
    category: str | None
    confidence: float | None
    urgency: str | None
    cues: tuple[str, ...]
    action_items: tuple[ActionItem, ...]
    draft_score: float | None
    proposed_reason: str | None = None
    relevance: float | None = None  # of the vetted answers the best draft is built on


@dataclass(frozen=True)
class EscalationDecision:
    auto_send: bool
    reason: str
    detail: str
