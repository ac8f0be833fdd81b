"""The reply loop: extract the action items, draft a reply, check it; revise until good
enough or the loop's bound, then hand the best draft (or the email) to the decider."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from processors import escalate as escalate_p
from processors import extract as extract_p
from processors import generate as generate_p
from processors import quality as quality_p
from processors.containment import check_reply
from processors.loop import LoopPolicy, next_step, temperature
from processors.models import DraftRequest, QualityRequest
from streams.engine.records import Incoming, Output
from streams.guard.gate import Fallback
from streams.stages.calls import ModelCalls
from streams.stages.ticket import (
    Draft,
    Ticket,
    category_of,
    customer_name,
    decision,
    decode,
    items_of,
    out,
    reply_policy,
)
from topics import catalog

PLAIN_TEMPLATE = "plain-template"


def revising(last: Draft | None) -> str:
    """For a revision: the last draft, the parameters it was made with, and its checker's
    verdict, as the generator sees them."""
    if last is None:
        return ""
    failed = ", ".join(last["failed"]) or "none"
    feedback = "; ".join(last["feedback"]) or "none"
    return (
        f"Draft {last['iteration']} (temperature {last['temperature']}, model "
        f"{last['model']}) scored {last['score'] or 0.0:.2f}. Failed: {failed}. "
        f"Feedback: {feedback}.\n\n{last['text']}"
    )


def wanted(ticket: Ticket) -> str:
    """The action items, in words, for a prompt."""
    return "; ".join(f"{i['kind']}: {i['text']}" for i in ticket["action_items"])


@dataclass
class Reply:
    calls: ModelCalls
    loop: LoopPolicy = field(default_factory=LoopPolicy)
    policy: escalate_p.Policy = field(default_factory=escalate_p.Policy)
    allowed: tuple[str, ...] = ()

    async def extract(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        subject, body = ticket["email"]["subject"], ticket["email"]["body_text"]
        call = await self.calls.call(
            "extract",
            extract_p.MODEL_NAME,
            ticket,
            lambda: extract_p.extract(subject, body),
            llm=lambda chat: self.calls.tasks.extract(chat, subject, body),
            prompt_chars=len(subject) + len(body),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        items = call.result
        ticket["action_items"] = [
            {
                "kind": i.kind,
                "text": i.text,
                "amount": i.amount,
                "currency": i.currency,
                "due": i.due,
                "account_ref": i.account_ref,
            }
            for i in items
        ]
        kinds = ", ".join(i.kind for i in items) or "none"
        detail = kinds + self.calls.describe(call)
        ticket["decisions"].append(decision("extract", call.model, "ok", began, detail))
        return [out(catalog.EXTRACTED, ticket), *self.calls.spend(call)]

    async def generate(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        iteration = ticket["iteration"] + 1
        body = ticket["email"]["body_text"]
        last = ticket["drafts"][-1] if ticket["drafts"] else None
        temp = temperature(iteration, policy=self.loop)
        request = DraftRequest(
            message_id=ticket["message_id"],
            category=category_of(ticket),
            customer_name=customer_name(ticket["email"]["sender"]),
            subject=ticket["email"]["subject"],
            action_items=items_of(ticket),
            iteration=iteration,
            temperature=temp,
            feedback=tuple(last["feedback"]) if last else (),
        )
        call = await self.calls.call(
            "generate",
            generate_p.MODEL_NAME,
            ticket,
            lambda: generate_p.generate(request),
            fallback=Fallback(PLAIN_TEMPLATE, lambda: generate_p.generate_plain(request)),
            llm=lambda chat: self.calls.tasks.generate(chat, request, body, revising(last)),
            prompt_chars=len(request.subject) + len(body),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        draft = call.result
        # What an LLM wrote is checked at once, with its prompt at hand; every draft is
        # checked again by the decider before it is sent.
        findings = (
            check_reply(
                draft.text,
                email_text=f"{request.subject}\n{body}",
                policy=reply_policy(self.policy, self.allowed, ticket),
                canary=getattr(draft, "canary", ""),
                instructions=getattr(draft, "instructions", ""),
            )
            if call.endpoint
            else []
        )
        ticket["iteration"] = iteration
        ticket["drafts"].append(
            {
                "iteration": iteration,
                "text": draft.text,
                "temperature": temp,
                "model": call.model,
                "score": None,
                "failed": [],
                "feedback": [],
            }
        )
        ticket["decisions"].append(
            decision(
                "generate",
                call.model,
                f"draft {iteration}",
                began,
                f"temperature {temp}{self.calls.describe(call)}",
            )
        )
        if findings:  # never sent, never even checked for quality: a person looks at it
            ticket["escalation_reason"] = "unsafe_reply"
            ticket["escalation_detail"] = "; ".join(findings)[:300]
            return [out(catalog.ESCALATE, ticket), *self.calls.spend(call)]
        return [out(catalog.DRAFTS_GENERATED, ticket), *self.calls.spend(call)]

    async def quality(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        draft = ticket["drafts"][-1]
        email = ticket["email"]
        sender = email["sender"]
        request = QualityRequest(draft["text"], items_of(ticket), sender, customer_name(sender))
        call = await self.calls.call(
            "quality",
            quality_p.MODEL_NAME,
            ticket,
            lambda: quality_p.check(request, banned=self.calls.models.banned_phrases),
            llm=lambda chat: self.calls.tasks.quality(
                chat, email["subject"], email["body_text"], draft["text"], wanted(ticket)
            ),
            prompt_chars=len(email["subject"]) + len(email["body_text"]) + len(draft["text"]),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        result = call.result
        draft["score"] = result.score
        draft["failed"] = list(result.failed)
        draft["feedback"] = list(result.feedback)
        earlier = [d["score"] or 0.0 for d in ticket["drafts"][:-1]]
        best = max(earlier, default=0.0)
        step = next_step(result.score, ticket["iteration"], best, policy=self.loop)
        failed = f" failed {','.join(result.failed)}" if result.failed else ""
        failed += self.calls.describe(call)
        ticket["decisions"].append(
            decision("quality", call.model, step, began, f"score {result.score:.2f}{failed}")
        )
        spent = self.calls.spend(call)
        if step == "approve":
            return [out(catalog.DRAFTS_APPROVED, ticket), *spent]
        if step == "revise":
            return [out(catalog.DRAFTS_REVISE, ticket), *spent]
        ticket["escalation_reason"] = "low_quality"
        ticket["escalation_detail"] = f"best draft scored {max(best, result.score):.2f}"
        return [out(catalog.ESCALATE, ticket), *spent]
