"""Valid sample records of every top-level schema, for tests."""

from __future__ import annotations

from typing import Any


def email(n: int = 1, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": f"<sample-{n}@example.com>",
        "received_at": 1_700_000_000_000 + n,
        "sender": f"customer{n}@example.com",
        "recipient": "support@mailroom.dev",
        "subject": "Charged twice this month",
        "body_text": "Hello, I was charged twice for invoice INV-4411 (49.00 EUR). Please refund.",
        "body_html": "<p>Hello, I was charged twice</p>",
        "headers": {"X-Mailer": "sample"},
        "in_reply_to": None,
        "attachments": [
            {"filename": "statement.pdf", "content_type": "application/pdf", "size_bytes": 1234}
        ],
        "source": "api",
    }
    record.update(overrides)
    return record


def decision(stage: str = "classify") -> dict[str, Any]:
    return {
        "stage": stage,
        "model": "tfidf-logreg",
        "outcome": "ok",
        "latency_ms": 1.5,
        "detail": "billing 0.93",
        "at": 1_700_000_000_100,
    }


def ticket(n: int = 1) -> dict[str, Any]:
    """A ticket as the escalation decider gets it: the stages' own start (``new_ticket``)
    with every result filled in."""
    from streams.stages.ticket import new_ticket

    record: dict[str, Any] = dict(new_ticket(email(n)))  # type: ignore[arg-type]
    record.update(
        {
            "classification": {
                "category": "billing",
                "confidence": 0.93,
                "model": "tfidf-logreg",
                "scores": {"billing": 0.93, "other": 0.07},
            },
            "urgency": {
                "level": "medium",
                "sentiment": -0.4,
                "cues": ["repeated_contact"],
                "model": "vader-cues",
            },
            "action_items": [
                {
                    "kind": "refund",
                    "text": "refund the duplicate charge",
                    "amount": 49.0,
                    "currency": "EUR",
                    "due": None,
                    "account_ref": "INV-4411",
                }
            ],
            "drafts": [
                {
                    "iteration": 1,
                    "text": "Dear customer, ...",
                    "temperature": 0.7,
                    "model": "kb-compose",
                    "score": 0.81,
                    "failed": ["length"],
                    "feedback": ["shorten"],
                    "sources": ["double-charge"],
                    "relevance": 0.66,
                }
            ],
            "iteration": 1,
            "cost": 0.002,
            "model_calls": 4,
            "decisions": [decision("classify"), decision("urgency")],
            "first_seen_at": 1_700_000_000_050,
        }
    )
    return record


def response(n: int = 1) -> dict[str, Any]:
    return {
        "message_id": f"<sample-{n}@example.com>",
        "recipient": f"customer{n}@example.com",
        "subject": "Re: Charged twice this month",
        "body": "Dear customer, we refunded 49.00 EUR. Kind regards, Support",
        "category": "billing",
        "iteration": 2,
        "quality_score": 0.91,
        "received_at": 1_700_000_000_000,
        "sent_at": 1_700_000_000_900,
        "cost": 0.004,
        "model_calls": 6,
        "decisions": [decision("quality")],
    }


def escalation(n: int = 1) -> dict[str, Any]:
    return {
        "message_id": f"<sample-{n}@example.com>",
        "reason": "critical_urgency",
        "detail": "legal threat",
        "email": email(n),
        "category": "billing",
        "urgency": "critical",
        "draft": None,
        "received_at": 1_700_000_000_000,
        "escalated_at": 1_700_000_000_500,
        "cost": 0.001,
        "model_calls": 3,
        "decisions": [decision("route")],
    }


SAMPLES = {"FeedbackEmail": email, "Ticket": ticket, "Response": response, "Escalation": escalation}
