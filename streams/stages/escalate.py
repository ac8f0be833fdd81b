"""The escalation decider: every email's one outcome, a reply or a person's queue.

It is the terminal stage, so it also keeps the terminal ledger: responses and
escalations are keyed by message id, with as many partitions as the decider's inputs,
so the ids of partition ``p`` of those topics are exactly the ones this worker can see
again on its partition ``p``. They are read back when a partition is assigned; a second
outcome for a known id (a redelivery after a crash, a replay run twice) is dropped, so a
customer never gets two replies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from processors import escalate as escalate_p
from processors.containment import address_problem, check_reply
from processors.models import EscalationDecision, EscalationRequest
from streams.engine.kafka import read_to_end
from streams.engine.records import Incoming, Output, TopicPartition
from streams.models.local import LocalModels
from streams.settings import Settings
from streams.stages.checks import answer_texts, gates
from streams.stages.ticket import (
    best_draft,
    decision,
    decode,
    items_of,
    now_ms,
    reply_policy,
)
from streams.telemetry import metrics
from topics import catalog
from topics import headers as h
from topics.codec import Codec

log = logging.getLogger("mailroom.escalate")
RESPONSE = Codec("Response")
ESCALATION = Codec("Escalation")


class TerminalLedger:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.done: dict[str, int] = {}  # message id -> partition

    def seen(self, message_id: str) -> bool:
        return message_id in self.done

    def add(self, message_id: str, partition: int) -> None:
        self.done[message_id] = partition

    async def restore(self, assigned: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in assigned}
        for topic in (catalog.RESPONSES, catalog.ESCALATIONS):
            for record in await read_to_end(self.settings, topic, numbers):
                if record.key:
                    self.done[record.key.decode("utf-8", errors="replace")] = record.partition
        log.info("terminal ledger knows %d message ids", len(self.done))

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in revoked}
        self.done = {m: p for m, p in self.done.items() if p not in numbers}


@dataclass
class Escalate:
    ledger: TerminalLedger
    models: LocalModels
    policy: escalate_p.Policy = field(default_factory=escalate_p.Policy)
    allowed: tuple[str, ...] = ()

    async def handle(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        if self.ledger.seen(ticket["message_id"]):
            metrics.DUPLICATES.inc()
            log.info("dropped a second outcome for %s", ticket["message_id"])
            return []
        best = best_draft(ticket)
        classification, urgency = ticket["classification"], ticket["urgency"]
        category = classification["category"] if classification else None
        decided = escalate_p.decide(
            EscalationRequest(
                category=category,
                confidence=classification["confidence"] if classification else None,
                urgency=urgency["level"] if urgency else None,
                cues=tuple(urgency["cues"]) if urgency else (),
                action_items=items_of(ticket),
                draft_score=best["score"] if best else None,
                proposed_reason=ticket["escalation_reason"],
                relevance=best["relevance"] if best else None,
            ),
            policy=self.policy,
        )
        if decided.auto_send and best is not None:
            # The last gate before a reply leaves: code checks it, whatever wrote it.
            findings = check_reply(
                best["text"],
                email_text=f"{ticket['email']['subject']}\n{ticket['email']['body_text']}",
                policy=reply_policy(self.policy, self.allowed),
                vetted=answer_texts(self.models, best["sources"]),
            )
            ungrounded = gates(self.models, ticket, best)
            unaddressable = address_problem(ticket["email"]["sender"])
            if unaddressable:  # code, not a model, chooses who a reply goes to: one sender
                decided = EscalationDecision(False, "no_reply_address", unaddressable)
            elif findings:
                decided = EscalationDecision(False, "unsafe_reply", "; ".join(findings)[:300])
            elif ungrounded:
                detail = "; ".join(ungrounded)[:300]
                decided = EscalationDecision(False, "no_grounded_answer", detail)
        ticket["decisions"].append(
            decision("escalate", escalate_p.MODEL_NAME, decided.reason, began, decided.detail)
        )
        key = ticket["message_id"].encode()
        headers = [(h.MESSAGE_ID, key)]
        email = ticket["email"]
        common: dict[str, Any] = {
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
                "category": category or "other",
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
            "category": category,
            "urgency": urgency["level"] if urgency else None,
            "draft": best["text"] if best else None,
            "escalated_at": now_ms(),
        }
        metrics.ESCALATIONS.labels(decided.reason).inc()
        metrics.END_TO_END.labels("escalation").observe(
            max(0.0, (now_ms() - email["received_at"]) / 1000)
        )
        return [Output(catalog.ESCALATIONS, ESCALATION.encode(escalation), key, headers)]
