"""Thin adapters: decode a Ticket, call a processor, record the decision, say where it goes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

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
from streams.engine.retry import Incoming, Output
from streams.engine.runner import decision, now_ms
from streams.guard.budget import BudgetExceeded
from streams.guard.gate import Call, ModelGate, ModelUnavailable
from streams.models.local import LocalModels
from streams.stages.ledger import TerminalLedger
from streams.telemetry import metrics
from topics import catalog
from topics import headers as h
from topics.codec import Codec, InboundCodec

log = logging.getLogger("mailroom.stages")
TICKET = Codec("Ticket")
RESPONSE = Codec("Response")
ESCALATION = Codec("Escalation")


def out(topic: str, ticket: dict[str, Any]) -> Output:
    """The ticket to ``topic``, keyed by message id. The runtime adds the trace context."""
    key = ticket["message_id"].encode()
    return Output(topic, TICKET.encode(ticket), key, [(h.MESSAGE_ID, key)])


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
    gate: ModelGate
    ledger: TerminalLedger
    max_email_bytes: int
    loop: LoopPolicy = field(default_factory=LoopPolicy)
    escalation_policy: escalate_p.Policy = field(default_factory=escalate_p.Policy)

    def __post_init__(self) -> None:
        self.inbound = InboundCodec(max_bytes=self.max_email_bytes)

    async def guarded(
        self,
        stage: str,
        model: str,
        ticket: dict[str, Any],
        fn: Any,
        *,
        began: float,
        fallback: Any = None,
    ) -> Call | None:
        """Call a model through budget, breaker and faults. None: route to a person."""
        try:
            call = await self.gate.call(
                stage,
                model,
                fn,
                message_id=ticket["message_id"],
                email_cost=ticket["cost"],
                fallback=fallback,
            )
        except (ModelUnavailable, BudgetExceeded) as exc:
            reason = "budget_exceeded" if isinstance(exc, BudgetExceeded) else ("model_unavailable")
            ticket["escalation_reason"] = reason
            ticket["escalation_detail"] = str(exc)
            ticket["decisions"].append(decision(stage, model, reason, began, str(exc)))
            return None
        ticket["cost"] = round(ticket["cost"] + call.cost, 6)
        ticket["model_calls"] += 1
        return call

    @staticmethod
    def spend(call: Call | None) -> list[Output]:
        if call is None or call.spend_event is None:
            return []
        topic, key, value = call.spend_event
        return [Output(topic, value, key)]

    async def prefilter(self, record: Incoming) -> list[Output]:
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
        return [out(topic, ticket)]

    async def classify(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        subject, body = ticket["email"]["subject"], ticket["email"]["body_text"]
        call = await self.guarded(
            "classify",
            classify_p.MODEL_NAME,
            ticket,
            lambda: classify_p.classify(subject, body, model=self.models.classifier),
            fallback=lambda: classify_p.classify_keywords(subject, body),
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
            detail = f"confidence {result.confidence:.3f}"
            ticket["decisions"].append(
                decision("classify", call.model, result.category, began, detail)
            )
        # Even unclassified, the ticket goes on: the join needs both halves.
        return [out(catalog.CLASSIFIED, ticket), *self.spend(call)]

    async def urgency(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        subject, body = ticket["email"]["subject"], ticket["email"]["body_text"]
        call = await self.guarded(
            "urgency",
            urgency_p.MODEL_NAME,
            ticket,
            lambda: urgency_p.score_urgency(subject, body, sentiment=self.models.sentiment),
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
                decision("urgency", call.model, result.level, began, ", ".join(result.cues))
            )
        return [out(catalog.SCORED, ticket), *self.spend(call)]

    async def route(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        level = (ticket["urgency"] or {}).get("level")
        category = (ticket["classification"] or {}).get("category", "other")
        if ticket["escalation_reason"]:
            topic, detail = catalog.ESCALATE, f"escalate: {ticket['escalation_reason']}"
        elif level == "critical":
            topic, detail = catalog.ROUTE_CRITICAL, "urgency critical: skip generation"
        else:
            topic, detail = catalog.route_topic(category), f"category {category}"
        ticket["decisions"].append(decision("route", "router", topic, began, detail))
        return [out(topic, ticket)]

    async def extract(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        subject, body = ticket["email"]["subject"], ticket["email"]["body_text"]
        call = await self.guarded(
            "extract",
            extract_p.MODEL_NAME,
            ticket,
            lambda: extract_p.extract(subject, body),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        items = call.result
        ticket["action_items"] = [item.__dict__ for item in items]
        kinds = ", ".join(i.kind for i in items) or "none"
        ticket["decisions"].append(decision("extract", call.model, "ok", began, kinds))
        return [out(catalog.EXTRACTED, ticket), *self.spend(call)]

    async def generate(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        iteration = ticket["iteration"] + 1
        last = ticket["drafts"][-1] if ticket["drafts"] else None
        temp = temperature(iteration, policy=self.loop)
        request = DraftRequest(
            message_id=ticket["message_id"],
            category=(ticket["classification"] or {}).get("category", "other"),
            customer_name=customer_name(ticket["email"]["sender"]),
            subject=ticket["email"]["subject"],
            action_items=items_of(ticket),
            iteration=iteration,
            temperature=temp,
            feedback=tuple(last["feedback"]) if last else (),
        )
        call = await self.guarded(
            "generate",
            generate_p.MODEL_NAME,
            ticket,
            lambda: generate_p.generate(request),
            fallback=lambda: generate_p.generate_plain(request),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        ticket["iteration"] = iteration
        ticket["drafts"].append(
            {
                "iteration": iteration,
                "text": call.result.text,
                "temperature": temp,
                "model": call.model,
                "score": None,
                "failed": [],
                "feedback": [],
            }
        )
        ticket["decisions"].append(
            decision("generate", call.model, f"draft {iteration}", began, f"temperature {temp}")
        )
        return [out(catalog.DRAFTS_GENERATED, ticket), *self.spend(call)]

    async def quality(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        draft = ticket["drafts"][-1]
        sender = ticket["email"]["sender"]
        request = QualityRequest(draft["text"], items_of(ticket), sender, customer_name(sender))
        call = await self.guarded(
            "quality",
            quality_p.MODEL_NAME,
            ticket,
            lambda: quality_p.check(request, banned=self.models.banned_phrases),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        result = call.result
        draft.update(score=result.score, failed=list(result.failed), feedback=list(result.feedback))
        earlier = [d["score"] or 0.0 for d in ticket["drafts"][:-1]]
        best = max(earlier, default=0.0)
        step = next_step(result.score, ticket["iteration"], best, policy=self.loop)
        failed = f" failed {','.join(result.failed)}" if result.failed else ""
        ticket["decisions"].append(
            decision("quality", call.model, step, began, f"score {result.score:.2f}{failed}")
        )
        spent = self.spend(call)
        if step == "approve":
            return [out(catalog.DRAFTS_APPROVED, ticket), *spent]
        if step == "revise":
            return [out(catalog.DRAFTS_REVISE, ticket), *spent]
        ticket["escalation_reason"] = "low_quality"
        ticket["escalation_detail"] = f"best draft scored {max(best, result.score):.2f}"
        return [out(catalog.ESCALATE, ticket), *spent]

    async def escalate(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = TICKET.decode(record.value)
        if self.ledger.seen(ticket["message_id"]):
            self.ledger.dropped += 1
            metrics.DUPLICATES.inc()
            log.info("dropped a second outcome for %s", ticket["message_id"])
            return []
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
        headers = [(h.MESSAGE_ID, key)]
        email = ticket["email"]
        common = {
            "message_id": ticket["message_id"],
            "received_at": email["received_at"],
            "cost": ticket["cost"],
            "model_calls": ticket["model_calls"],
            "decisions": ticket["decisions"],
        }
        self.ledger.add(ticket["message_id"], record.partition)
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
            metrics.RESPONSES.inc()
            metrics.END_TO_END.labels("response").observe(
                max(0.0, (now_ms() - email["received_at"]) / 1000)
            )
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
        metrics.ESCALATIONS.labels(decided.reason).inc()
        metrics.END_TO_END.labels("escalation").observe(
            max(0.0, (now_ms() - email["received_at"]) / 1000)
        )
        return [Output(catalog.ESCALATIONS, ESCALATION.encode(escalation), key, headers)]
