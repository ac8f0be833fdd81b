"""The ticket: the one record that travels between stages, typed after its Avro schema.

``topics/schemas/mailroom.Ticket.avsc`` is the source; these TypedDicts name the same
fields with the same types (a test compares them field by field), so stages, the bench
and the tests build and read tickets through one definition. Helpers here are what every
stage does with a ticket: start one, decode, write it to a topic, note a decision.
"""

from __future__ import annotations

import re
import time
from typing import TypedDict, cast

from processors import escalate as escalate_p
from processors.containment import ReplyPolicy
from processors.models import ActionItem as ActionItemValue
from streams.engine.records import Output
from topics import headers as h
from topics.codec import Codec

TICKET = Codec("Ticket")


class Attachment(TypedDict):
    filename: str
    content_type: str
    size_bytes: int


class FeedbackEmail(TypedDict):
    message_id: str
    received_at: int
    sender: str
    recipient: str
    subject: str
    body_text: str
    body_html: str | None
    headers: dict[str, str]
    in_reply_to: str | None
    attachments: list[Attachment]
    source: str


class Classification(TypedDict):
    category: str
    confidence: float
    model: str
    scores: dict[str, float]


class Urgency(TypedDict):
    level: str
    sentiment: float
    cues: list[str]
    model: str


class ActionItem(TypedDict):
    kind: str
    text: str
    amount: float | None
    currency: str | None
    due: str | None
    account_ref: str | None


class Draft(TypedDict):
    iteration: int
    text: str
    temperature: float
    model: str
    score: float | None
    failed: list[str]
    feedback: list[str]
    sources: list[str]
    relevance: float | None


class Decision(TypedDict):
    stage: str
    model: str
    outcome: str
    latency_ms: float
    detail: str
    at: int


class Ticket(TypedDict):
    message_id: str
    email: FeedbackEmail
    classification: Classification | None
    urgency: Urgency | None
    action_items: list[ActionItem]
    drafts: list[Draft]
    iteration: int
    escalation_reason: str | None
    escalation_detail: str | None
    cost: float
    model_calls: int
    decisions: list[Decision]
    first_seen_at: int
    language: str | None


def now_ms() -> int:
    return int(time.time() * 1000)


def new_ticket(email: FeedbackEmail) -> Ticket:
    """The ticket the prefilter starts for an email: nothing decided yet."""
    return {
        "message_id": email["message_id"],
        "email": email,
        "classification": None,
        "urgency": None,
        "action_items": [],
        "drafts": [],
        "iteration": 0,
        "escalation_reason": None,
        "escalation_detail": None,
        "cost": 0.0,
        "model_calls": 0,
        "decisions": [],
        "first_seen_at": now_ms(),
        "language": None,
    }


def decode(value: bytes | None) -> Ticket:
    """A ticket from its Avro bytes (the codec checks the schema; this names the type)."""
    return cast(Ticket, TICKET.decode(value))


def out(topic: str, ticket: Ticket) -> Output:
    """The ticket to ``topic``, keyed by message id. The runtime adds the trace context."""
    key = ticket["message_id"].encode()
    return Output(topic, TICKET.encode(ticket), key, [(h.MESSAGE_ID, key)])


def decision(stage: str, model: str, outcome: str, began: float, detail: str = "") -> Decision:
    """One entry of a ticket's decision path; ``began`` is a ``perf_counter`` reading."""
    return {
        "stage": stage,
        "model": model,
        "outcome": outcome,
        "latency_ms": round((time.perf_counter() - began) * 1000, 3),
        "detail": detail[:300],
        "at": now_ms(),
    }


def items_of(ticket: Ticket) -> tuple[ActionItemValue, ...]:
    return tuple(ActionItemValue(**item) for item in ticket["action_items"])


def category_of(ticket: Ticket, default: str = "other") -> str:
    classification = ticket["classification"]
    return classification["category"] if classification else default


def best_draft(ticket: Ticket) -> Draft | None:
    """The highest-scoring checked draft, if any was checked."""
    scored = [(d["score"], n, d) for n, d in enumerate(ticket["drafts"]) if d["score"] is not None]
    return max(scored, key=lambda entry: (entry[0], -entry[1]))[2] if scored else None


def reply_policy(policy: escalate_p.Policy, allowed: tuple[str, ...]) -> ReplyPolicy:
    """What a reply may contain although the email does not: the company's own contacts
    and the configured allow list, never an address of the email's headers (its To is
    the sender's to write: a spoofed email could name a phishing address there, to be
    sent on to whoever its From names); refunds up to the escalation policy's limit."""
    return ReplyPolicy(policy.refund_limit, allowed)


#: a display name a reply may greet: at most six words of letters between spaces,
#: hyphens, apostrophes or a dot and a space, at most 60 characters (the sender writes it:
#: a name of a link, a number or a sentence is not greeted)
NAME = re.compile(r"[^\W\d_]+(?:(?:[ '-]|\. )[^\W\d_]+)*\.?")  # "evil.com" is no name


def customer_name(sender: str) -> str:
    """The name a reply greets the sender by, or "" (then the anonymous greeting)."""
    name = " ".join(sender.split("<")[0].strip().strip('"').split())
    if len(name) <= 60 and len(name.split()) <= 6 and NAME.fullmatch(name):
        return name
    local = sender.split("@")[0].strip("<> ")
    first = local.replace("_", ".").split(".")[0]
    return first.capitalize() if first.isalpha() and len(first) <= 30 else ""
