"""Triage: the prefilter, the classifier, the urgency scorer, and the router."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from processors import classify as classify_p
from processors import urgency as urgency_p
from processors.errors import Rejected
from processors.language import identify
from processors.models import Classification, Email
from processors.prefilter import prefilter
from streams.engine.records import Incoming, Output
from streams.guard.gate import Fallback
from streams.models.batch import MicroBatch
from streams.stages.calls import ModelCalls
from streams.stages.ticket import FeedbackEmail, category_of, decision, decode, new_ticket, out
from topics import catalog
from topics.codec import InboundCodec

KEYWORD_RULES = "keyword-rules"


@dataclass
class Triage:
    calls: ModelCalls
    max_email_bytes: int

    def __post_init__(self) -> None:
        self.inbound = InboundCodec(max_bytes=self.max_email_bytes)
        self.classify_batch = MicroBatch[tuple[str, str], Classification](
            lambda emails: classify_p.classify_many(emails, model=self.calls.models.classifier)
        )

    async def prefilter(self, record: Incoming) -> list[Output]:
        """Drop auto-replies, bounces and spam before any model is spent on them."""
        began = time.perf_counter()
        email: FeedbackEmail = self.inbound.decode_inbound(  # type: ignore[assignment]
            record.value, key=record.key, timestamp_ms=record.timestamp
        )
        result = prefilter(
            Email(
                email["message_id"],
                email["sender"],
                email["subject"],
                email["body_text"],
                email["headers"],
                email["body_html"],
            )
        )
        ticket = new_ticket(email)
        ticket["language"] = identify(f"{email['subject']}\n{result.text}")
        outcome = "accepted" if result.accepted else "ignored"
        ticket["decisions"].append(
            decision("prefilter", "prefilter-rules", outcome, began, result.reason)
        )
        return [out(catalog.ACCEPTED if result.accepted else catalog.IGNORED, ticket)]

    async def classify(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        subject, body = ticket["email"]["subject"], ticket["email"]["body_text"]
        model = self.calls.models.classifier

        def local() -> Classification:
            return classify_p.classify(subject, body, model=model)

        sure = self.sure(local)
        call = await self.calls.call(
            "classify",
            classify_p.MODEL_NAME,
            ticket,
            (lambda: sure) if sure else lambda: self.classify_batch((subject, body)),
            fallback=Fallback(KEYWORD_RULES, lambda: classify_p.classify_keywords(subject, body)),
            llm=None if sure else lambda chat: self.calls.tasks.classify(chat, subject, body),
            prompt_chars=len(subject) + len(body),
            began=began,
        )
        if call is not None:
            result = call.result
            ticket["classification"] = {
                "category": result.category,
                "confidence": result.confidence,
                "model": call.model,
                "scores": result.scores,
            }
            detail = f"confidence {result.confidence:.3f}{self.calls.describe(call)}"
            if sure:
                detail += "; cascade: the local model is sure, no paid call"
            ticket["decisions"].append(
                decision("classify", call.model, result.category, began, detail)
            )
        # Even unclassified, the ticket goes on: the join needs both halves.
        return [out(catalog.CLASSIFIED, ticket), *self.calls.spend(call)]

    def sure(self, local: Callable[[], Classification]) -> Classification | None:
        """The cascade's first pass: with a paid classifier in the chain, the local one
        answers first, and its answer stands when it is sure enough."""
        settings = self.calls.settings
        if not settings.cascade or not settings.paid("classify"):
            return None
        try:
            first = local()
        except Rejected:
            return None
        floor = self.calls.models.taxonomy.cascade.confidence
        return first if first.confidence >= floor else None

    async def urgency(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        subject, body = ticket["email"]["subject"], ticket["email"]["body_text"]
        call = await self.calls.call(
            "urgency",
            urgency_p.MODEL_NAME,
            ticket,
            lambda: urgency_p.score_urgency(subject, body, sentiment=self.calls.models.sentiment),
            llm=lambda chat: self.calls.tasks.urgency(chat, subject, body),
            prompt_chars=len(subject) + len(body),
            began=began,
        )
        if call is not None:
            result = call.result
            ticket["urgency"] = {
                "level": result.level,
                "sentiment": result.sentiment,
                "cues": list(result.cues),
                "model": call.model,
            }
            ticket["decisions"].append(
                decision(
                    "urgency",
                    call.model,
                    result.level,
                    began,
                    ", ".join(result.cues) + self.calls.describe(call),
                )
            )
        return [out(catalog.SCORED, ticket), *self.calls.spend(call)]

    async def route(self, record: Incoming) -> list[Output]:
        """By urgency first (a level that goes to a person skips generation), then by the
        category's route; a category without one goes to ``other``."""
        began = time.perf_counter()
        ticket = decode(record.value)
        level = ticket["urgency"]["level"] if ticket["urgency"] else None
        category = category_of(ticket)
        taxonomy = self.calls.models.taxonomy
        if ticket["escalation_reason"]:
            topic, detail = catalog.ESCALATE, f"escalate: {ticket['escalation_reason']}"
        elif level in taxonomy.urgency.to_person:
            topic, detail = catalog.ROUTE_CRITICAL, f"urgency {level}: skip generation"
        elif category in taxonomy.escalation.always_human:
            topic, detail = catalog.ROUTE_CRITICAL, f"category {category}: always a person"
        else:
            route = taxonomy.route_of(category)
            if route not in catalog.ROUTES:
                route = catalog.OTHER
            topic, detail = catalog.route_topic(route), f"category {category}"
        ticket["decisions"].append(decision("route", "router", topic, began, detail))
        return [out(topic, ticket)]
