"""The reply loop: extract the action items, draft a reply, check it; revise until good
enough or the loop's bound, then hand the best draft (or the email) to the decider."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from processors import escalate as escalate_p
from processors import extract as extract_p
from processors import generate as generate_p
from processors import quality as quality_p
from processors.containment import ReplyPolicy, check_reply
from processors.generate import Grounding, Words, usable
from processors.kb import Hit
from processors.loop import LoopPolicy, next_step, temperature
from processors.models import DraftRequest, QualityRequest
from streams.engine.records import Incoming, Output
from streams.models.batch import MicroBatch
from streams.stages.calls import ModelCalls
from streams.stages.checks import gates
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

    def __post_init__(self) -> None:
        self.search_batch = MicroBatch[tuple[str, str], list[Hit]](self._search_many)

    def _search_many(self, asked: Sequence[tuple[str, str]]) -> list[list[Hit]]:
        """The five best vetted answers for each (text, language), one model call per
        language."""
        index = self.calls.models.kb
        assert index is not None
        found: dict[int, list[Hit]] = {}
        for language in {lang for _, lang in asked}:
            rows = [i for i, (_, lang) in enumerate(asked) if lang == language]
            hits = index.search_many([asked[i][0] for i in rows], k=5, languages=[language])
            found.update(zip(rows, hits, strict=True))
        return [found[i] for i in range(len(asked))]

    async def grounding(self, ticket: Ticket) -> list[Grounding]:
        """The vetted answers usable for this email, most relevant first: in its
        language, at or above the relevance floor, every slot fillable."""
        models = self.calls.models
        if models.kb is None:
            return []
        kb = models.taxonomy.kb
        email = ticket["email"]
        slots = {**models.taxonomy.company.slots(), **slot_values(ticket)}
        hits = await self.search_batch(
            (f"{email['subject']}\n{email['body_text']}", language_of(ticket, kb.languages))
        )
        return usable(hits, kb.relevance_floor, slots)

    async def generate(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        iteration = ticket["iteration"] + 1
        body = ticket["email"]["body_text"]
        last = ticket["drafts"][-1] if ticket["drafts"] else None
        temp = temperature(iteration, policy=self.loop)
        taxonomy = self.calls.models.taxonomy
        language = language_of(ticket, taxonomy.kb.languages)
        words = taxonomy.brand.words(language)
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
        grounding = await self.grounding(ticket)
        paid = self.calls.settings.paid("generate")
        if language not in taxonomy.kb.languages and not paid:
            return self.to_person(
                ticket,
                began,
                "unsupported_language",
                f"the email is in {language}; vetted answers exist in "
                f"{', '.join(taxonomy.kb.languages)} and no LLM writes replies",
            )
        if not grounding and (self.calls.models.kb is not None or not paid):
            return self.to_person(
                ticket,
                began,
                "no_grounded_answer",
                f"no vetted answer in {language} reaches relevance "
                f"{taxonomy.kb.relevance_floor:.2f}",
            )
        exact = bool(grounding) and grounding[0].relevance >= taxonomy.kb.exact
        cascade = paid and exact and self.calls.settings.cascade and iteration == 1
        local_words = Words(words.greeting, words.anonymous_greeting, words.sign_off)
        call = await self.calls.call(
            "generate",
            generate_p.MODEL_NAME,
            ticket,
            lambda: generate_p.generate(request, grounding, local_words),
            llm=None
            if cascade
            else lambda chat: self.calls.tasks.generate(
                chat, request, body, revising(last), grounding, language, words
            ),
            prompt_chars=len(request.subject) + len(body) + sum(len(g.text) for g in grounding),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        draft = call.result
        # What an LLM wrote is checked at once, with its prompt at hand; every draft is
        # checked again by the quality stage and the decider before it is sent.
        findings = (
            check_reply(
                draft.text,
                email_text=f"{request.subject}\n{body}",
                policy=self.reply_policy(),
                canary=getattr(draft, "canary", ""),
                instructions=getattr(draft, "instructions", ""),
                vetted=[g.text for g in grounding if g.id in draft.sources],
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
                "sources": list(draft.sources),
                "relevance": draft.relevance,
            }
        )
        how = f"temperature {temp}; answers {', '.join(draft.sources) or 'none'}"
        if cascade:
            how += f"; cascade: vetted answer at {grounding[0].relevance:.2f}, no paid call"
        ticket["decisions"].append(
            decision(
                "generate",
                call.model,
                f"draft {iteration}",
                began,
                how + self.calls.describe(call),
            )
        )
        if findings:  # never sent, never even checked for quality: a person looks at it
            ticket["escalation_reason"] = "unsafe_reply"
            ticket["escalation_detail"] = "; ".join(findings)[:300]
            return [out(catalog.ESCALATE, ticket), *self.calls.spend(call)]
        return [out(catalog.DRAFTS_GENERATED, ticket), *self.calls.spend(call)]

    def to_person(self, ticket: Ticket, began: float, reason: str, detail: str) -> list[Output]:
        ticket["escalation_reason"] = reason
        ticket["escalation_detail"] = detail
        ticket["decisions"].append(
            decision("generate", generate_p.MODEL_NAME, reason, began, detail)
        )
        return [out(catalog.ESCALATE, ticket)]

    def reply_policy(self) -> ReplyPolicy:
        return reply_policy(self.policy, self.allowed)

    async def quality(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        draft = ticket["drafts"][-1]
        email = ticket["email"]
        sender = email["sender"]
        models = self.calls.models
        brand = models.taxonomy.brand
        request = QualityRequest(
            draft["text"], items_of(ticket), sender, customer_name(sender), self.allowed
        )
        # The cascade: a vetted answer composed as written, that matches the email at the
        # "exact" level, needs no paid judge; the code's checks below still apply.
        vetted = (
            self.calls.settings.cascade
            and draft["model"] == generate_p.MODEL_NAME
            and (draft["relevance"] or 0.0) >= models.taxonomy.kb.exact
        )
        call = await self.calls.call(
            "quality",
            quality_p.MODEL_NAME,
            ticket,
            lambda: quality_p.check(
                request,
                banned=models.banned_phrases,
                greeting=bool(brand.greeting or brand.anonymous_greeting),
                sign_off=bool(brand.sign_off),
            ),
            llm=None
            if vetted
            else lambda chat: self.calls.tasks.quality(
                chat, email["subject"], email["body_text"], draft["text"], wanted(ticket)
            ),
            prompt_chars=len(email["subject"]) + len(email["body_text"]) + len(draft["text"]),
            began=began,
        )
        if call is None:
            return [out(catalog.ESCALATE, ticket)]
        result = call.result
        ungrounded = gates(models, ticket, draft)
        score = 0.0 if ungrounded else result.score
        draft["score"] = score
        draft["failed"] = [*result.failed, *(["grounded"] if ungrounded else [])]
        draft["feedback"] = [*result.feedback, *ungrounded][:8]
        earlier = [d["score"] or 0.0 for d in ticket["drafts"][:-1]]
        best = max(earlier, default=0.0)
        step = next_step(score, ticket["iteration"], best, policy=self.loop)
        if step == "revise" and ungrounded and not await self.revisable(ticket):
            step = "escalate"  # no other vetted answer to try, and no LLM to rewrite it
        failed = f" failed {','.join(draft['failed'])}" if draft["failed"] else ""
        failed += self.calls.describe(call)
        if vetted and self.calls.settings.paid("quality"):
            failed += "; cascade: a vetted answer as written, checked in code, no paid call"
        ticket["decisions"].append(
            decision("quality", call.model, step, began, f"score {score:.2f}{failed}")
        )
        spent = self.calls.spend(call)
        if step == "approve":
            return [out(catalog.DRAFTS_APPROVED, ticket), *spent]
        if step == "revise":
            return [out(catalog.DRAFTS_REVISE, ticket), *spent]
        grounded = [d for d in ticket["drafts"] if "grounded" not in d["failed"]]
        if grounded:
            ticket["escalation_reason"] = "low_quality"
            ticket["escalation_detail"] = f"best draft scored {max(best, score):.2f}"
        else:
            ticket["escalation_reason"] = "no_grounded_answer"
            ticket["escalation_detail"] = "; ".join(ungrounded)[:300]
        return [out(catalog.ESCALATE, ticket), *spent]

    async def revisable(self, ticket: Ticket) -> bool:
        """Whether another draft can differ: an LLM rewrites, the composer takes the next
        vetted answer (if there is one it has not used)."""
        if self.calls.settings.paid("generate"):
            return True
        return len(await self.grounding(ticket)) > ticket["iteration"]


def language_of(ticket: Ticket, languages: tuple[str, ...]) -> str:
    """The email's language; the knowledge base's first when it was too short to tell."""
    return ticket["language"] or languages[0]


def slot_values(ticket: Ticket) -> dict[str, str]:
    """What the email itself gives a vetted answer's slots."""
    values = {"customer_name": customer_name(ticket["email"]["sender"]) or "customer"}
    for item in ticket["action_items"]:
        if item["account_ref"] and "reference" not in values:
            values["reference"] = item["account_ref"]
        if item["amount"] is not None and "amount" not in values:
            currency = f" {item['currency']}" if item["currency"] else ""
            values["amount"] = f"{item['amount']:.2f}{currency}"
    return values
