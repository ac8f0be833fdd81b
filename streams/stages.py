"""Thin adapters: decode a Ticket, call a processor, record the decision, say where it goes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord

from processors import classify as classify_p
from processors import escalate as escalate_p
from processors import extract as extract_p
from processors import generate as generate_p
from processors import quality as quality_p
from processors import urgency as urgency_p
from processors.loop import LoopPolicy, next_step, temperature
from processors.models import (
    ActionItem,
    DraftRequest,
    Email,
    EscalationRequest,
    QualityRequest,
)
from processors.prefilter import prefilter
from streams.models import LocalModels
from streams.runtime import Output, decision, now_ms
from topics import catalog
from topics import headers as h
from topics.codec import Codec, InboundCodec

TICKET = Codec("Ticket")
RESPONSE = Codec("Response")
ESCALATION = Codec("Escalation")


def out(topic: str, ticket: dict[str, Any], record: ConsumerRecord[bytes, bytes]) -> Output:
    """The ticket to ``topic``, keyed by message id, carrying the trace headers along."""
    carried = [(k, v) for k, v in (record.headers or ()) if k in (h.TRACEPARENT, h.TRACESTATE)]
    key = ticket["message_id"].encode()
    return Output(topic, TICKET.encode(ticket), key, [*carried, (h.MESSAGE_ID, key)])


def items_of(ticket: dict[str, Any]) -> tuple[ActionItem, ...]:
    return tuple(ActionItem(**item) for item in ticket["action_items"])


def customer_name(sender: str) -> str:
    name = sender.split("<")[0].strip().strip('"')
    if name and "@" not in name:
        return name
    local = sender.split("@")[0].strip("<> ")
    first = local.replace("_", ".").split(".")[0]
    return first.capitalize() if first.isalpha() else ""


@dataclass
class Stages:
    """The handlers of every stage, sharing one worker's models and settings."""

    models: LocalModels
    max_email_bytes: int
    loop: LoopPolicy = field(default_factory=LoopPolicy)
    escalation_policy: escalate_p.Policy = field(default_factory=escalate_p.Policy)

    def __post_init__(self) -> None:
        self.inbound = InboundCodec(max_bytes=self.max_email_bytes)

    async def prefilter(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        email = self.inbound.decode_inbound(
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
        ticket: dict[str, Any] = {
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
        }
        outcome = "accepted" if result.accepted else "ignored"
        ticket["decisions"].append(
            decision("prefilter", "prefilter-rules", outcome, began, result.reason)
        )
        topic = catalog.ACCEPTED if result.accepted else catalog.IGNORED
        return [out(topic, ticket, record)]

    async def classify(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        email = ticket["email"]
        result = classify_p.classify(
            email["subject"], email["body_text"], model=self.models.classifier
        )
        ticket["classification"] = {
            "category": result.category,
            "confidence": result.confidence,
            "model": classify_p.MODEL_NAME,
            "scores": result.scores,
        }
        ticket["model_calls"] += 1
        ticket["decisions"].append(
            decision(
                "classify",
                classify_p.MODEL_NAME,
                result.category,
                began,
                f"confidence {result.confidence:.3f}",
            )
        )
        return [out(catalog.CLASSIFIED, ticket, record)]

    async def urgency(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        email = ticket["email"]
        result = urgency_p.score_urgency(
            email["subject"], email["body_text"], sentiment=self.models.sentiment
        )
        ticket["urgency"] = {
            "level": result.level,
            "sentiment": result.sentiment,
            "cues": list(result.cues),
            "model": urgency_p.MODEL_NAME,
        }
        ticket["model_calls"] += 1
        ticket["decisions"].append(
            decision("urgency", urgency_p.MODEL_NAME, result.level, began, ", ".join(result.cues))
        )
        return [out(catalog.SCORED, ticket, record)]

    async def route(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        level = (ticket["urgency"] or {}).get("level")
        category = (ticket["classification"] or {}).get("category", "other")
        if level == "critical":
            topic, detail = catalog.ROUTE_CRITICAL, "urgency critical: skip generation"
        else:
            topic, detail = catalog.route_topic(category), f"category {category}"
        ticket["decisions"].append(decision("route", "router", topic, began, detail))
        return [out(topic, ticket, record)]

    async def extract(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        email = ticket["email"]
        items = extract_p.extract(email["subject"], email["body_text"])
        ticket["action_items"] = [item.__dict__ for item in items]
        ticket["model_calls"] += 1
        ticket["decisions"].append(
            decision(
                "extract",
                extract_p.MODEL_NAME,
                "ok",
                began,
                ", ".join(i.kind for i in items) or "none",
            )
        )
        return [out(catalog.EXTRACTED, ticket, record)]

    async def generate(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        iteration = ticket["iteration"] + 1
        last = ticket["drafts"][-1] if ticket["drafts"] else None
        temp = temperature(iteration, policy=self.loop)
        result = generate_p.generate(
            DraftRequest(
                message_id=ticket["message_id"],
                category=(ticket["classification"] or {}).get("category", "other"),
                customer_name=customer_name(ticket["email"]["sender"]),
                subject=ticket["email"]["subject"],
                action_items=items_of(ticket),
                iteration=iteration,
                temperature=temp,
                feedback=tuple(last["feedback"]) if last else (),
            )
        )
        ticket["iteration"] = iteration
        ticket["drafts"].append(
            {
                "iteration": iteration,
                "text": result.text,
                "temperature": temp,
                "model": generate_p.MODEL_NAME,
                "score": None,
                "failed": [],
                "feedback": [],
            }
        )
        ticket["model_calls"] += 1
        ticket["decisions"].append(
            decision(
                "generate",
                generate_p.MODEL_NAME,
                f"draft {iteration}",
                began,
                f"temperature {temp}",
            )
        )
        return [out(catalog.DRAFTS_GENERATED, ticket, record)]

    async def quality(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        draft = ticket["drafts"][-1]
        result = quality_p.check(
            QualityRequest(
                draft["text"],
                items_of(ticket),
                ticket["email"]["sender"],
                customer_name(ticket["email"]["sender"]),
            ),
            banned=self.models.banned_phrases,
        )
        draft.update(score=result.score, failed=list(result.failed), feedback=list(result.feedback))
        best = (
            max((d["score"] or 0.0) for d in ticket["drafts"][:-1])
            if len(ticket["drafts"]) > 1
            else 0.0
        )
        step = next_step(result.score, ticket["iteration"], best, policy=self.loop)
        ticket["model_calls"] += 1
        ticket["decisions"].append(
            decision(
                "quality",
                quality_p.MODEL_NAME,
                step,
                began,
                f"score {result.score:.2f}"
                + (f" failed {','.join(result.failed)}" if result.failed else ""),
            )
        )
        if step == "approve":
            return [out(catalog.DRAFTS_APPROVED, ticket, record)]
        if step == "revise":
            return [out(catalog.DRAFTS_REVISE, ticket, record)]
        ticket["escalation_reason"] = "low_quality"
        ticket["escalation_detail"] = f"best draft scored {max(best, result.score):.2f}"
        return [out(catalog.ESCALATE, ticket, record)]

    async def escalate(self, record: ConsumerRecord[bytes, bytes]) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        scored = [d for d in ticket["drafts"] if d["score"] is not None]
        best = max(scored, key=lambda d: d["score"]) if scored else None
        classification = ticket["classification"] or {}
        urgency = ticket["urgency"] or {}
        decided = escalate_p.decide(
            EscalationRequest(
                category=classification.get("category"),
                confidence=classification.get("confidence"),
                urgency=urgency.get("level"),
                cues=tuple(urgency.get("cues", ())),
                action_items=items_of(ticket),
                draft_score=best["score"] if best else None,
                proposed_reason=ticket["escalation_reason"],
            ),
            policy=self.escalation_policy,
        )
        ticket["decisions"].append(
            decision("escalate", escalate_p.MODEL_NAME, decided.reason, began, decided.detail)
        )
        key = ticket["message_id"].encode()
        carried = [(k, v) for k, v in (record.headers or ()) if k in (h.TRACEPARENT, h.TRACESTATE)]
        headers = [*carried, (h.MESSAGE_ID, key)]
        email = ticket["email"]
        common = {
            "message_id": ticket["message_id"],
            "received_at": email["received_at"],
            "cost": ticket["cost"],
            "model_calls": ticket["model_calls"],
            "decisions": ticket["decisions"],
        }
        if decided.auto_send and best is not None:
            response = {
                **common,
                "recipient": email["sender"],
                "subject": f"Re: {email['subject']}".strip(),
                "body": best["text"],
                "category": classification.get("category", "other"),
                "iteration": best["iteration"],
                "quality_score": best["score"],
                "sent_at": now_ms(),
            }
            return [Output(catalog.RESPONSES, RESPONSE.encode(response), key, headers)]
        escalation = {
            **common,
            "reason": decided.reason,
            "detail": ticket["escalation_detail"] or decided.detail,
            "email": email,
            "category": classification.get("category"),
            "urgency": urgency.get("level"),
            "draft": best["text"] if best else None,
            "escalated_at": now_ms(),
        }
        return [Output(catalog.ESCALATIONS, ESCALATION.encode(escalation), key, headers)]
