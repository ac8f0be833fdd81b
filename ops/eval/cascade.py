"""The cascade: a cheap first pass decides which paid models an email needs.

Per 100 held-out tickets, the classifier, the generator and the quality checker are a paid
OpenAI-compatible endpoint first (``[paid, local]``), once with the cascade and once
without. The endpoint is ``ops.llmstub``'s scripted server, priced like a hosted model
(2.50 / 10.00 USD per million input / output tokens, tokens counted as characters / 4). It
answers as a careful model would with what it is given: the classification the local model
would make, the first vetted answer of its grounding as the reply (naming it), and the
verdict of the local quality rules. So the two runs can differ in quality only through what
the cascade decides; both are measured side by side.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ops.eval.common import Outcome, rouge_l, run_emails
from ops.eval.tickets import TicketsRun
from ops.llmstub import ScriptedServer, completion
from processors.classify import classify
from processors.models import QualityRequest
from processors.quality import check
from streams.endpoint import Endpoint
from streams.models.local import LocalModels
from streams.settings import Settings

EMAILS = 100
PRICES = (2.5, 10.0)  # USD per million input, output tokens
ENCLOSED = re.compile(r"<<(EMAIL-[0-9a-f]+)>>\n(.*)\n<</\1>>", re.S)
VETTED = re.compile(r"--- vetted answer (\S+) \(.*?\) ---\n(.*?)(?=\n\n--- |\Z)", re.S)


class CarefulModel:
    """Answers classify and generate requests; counts what it was asked."""

    def __init__(self, models: LocalModels) -> None:
        self.models = models
        self.calls: dict[str, int] = {"classify": 0, "generate": 0, "quality": 0}
        self.tokens = [0, 0]  # input, output

    @property
    def cost(self) -> float:
        return (self.tokens[0] * PRICES[0] + self.tokens[1] * PRICES[1]) / 1e6

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        found = ENCLOSED.search(user)
        text = found.group(2) if found else user
        if system.startswith("You sort"):
            self.calls["classify"] += 1
            subject, _, rest = text.removeprefix("Subject: ").partition("\n\n")
            result = classify(subject, rest, model=self.models.classifier)
            answer = {"category": result.category, "confidence": round(result.confidence, 4)}
        elif system.startswith("You check"):
            self.calls["quality"] += 1
            reply = text.split("--- drafted reply ---\n", 1)[-1]
            brand = self.models.taxonomy.brand
            verdict = check(
                QualityRequest(reply, (), "customer@example.com", "Customer"),
                banned=self.models.banned_phrases,
                greeting=bool(brand.greeting or brand.anonymous_greeting),
                sign_off=bool(brand.sign_off),
            )
            answer = {"score": verdict.score, "failed": list(verdict.failed), "feedback": []}
        else:
            self.calls["generate"] += 1
            vetted = VETTED.search(text)
            answer = (
                {"reply": vetted.group(2).strip(), "sources": [vetted.group(1)]}
                if vetted
                else {"reply": "Thank you for your message.", "sources": []}
            )
        content = json.dumps(answer)
        prompt = sum(len(m["content"]) for m in body["messages"]) // 4
        self.tokens[0] += prompt
        self.tokens[1] += len(content) // 4
        return completion(content, prompt_tokens=prompt, completion_tokens=len(content) // 4)


def run(tickets: TicketsRun) -> dict[str, Any]:
    base = tickets.settings
    emails = [o.email for o in tickets.outcomes[:EMAILS]]
    figures: dict[str, Any] = {}
    arms: dict[bool, tuple[int, float, float, float]] = {}
    for cascade in (False, True):
        models = LocalModels(base.data_dir, base.taxonomy, base.classifier)
        script = CarefulModel(models)
        with ScriptedServer() as server:
            server.script(script)
            paid = Endpoint(
                base_url=server.base_url,
                model="paid",
                send_pii=True,
                input_usd_per_mtok=PRICES[0],
                output_usd_per_mtok=PRICES[1],
            )
            settings = Settings(
                data_dir=base.data_dir,
                tracing=False,
                config=base.config,
                classifier=base.classifier,
                endpoints={"paid": paid},
                models={stage: ("paid", "local") for stage in ("classify", "generate", "quality")},
                cascade=cascade,
                budget_per_email=1.0,
            )
            outcomes = run_emails(settings, emails)
        calls = sum(script.calls.values())
        cost = script.cost
        answered, quality = quality_of(outcomes, tickets.references)
        arms[cascade] = (calls, cost, answered, quality)
        word = "with" if cascade else "without"
        figures[f"cascade: paid calls per 100 emails, {word}"] = calls * 100 / len(emails)
        figures[f"cascade: paid classify / generate / quality calls, {word}"] = " / ".join(
            str(script.calls[stage]) for stage in ("classify", "generate", "quality")
        )
        figures[f"cascade: paid cost per 100 emails (USD), {word}"] = round(
            cost * 100 / len(emails), 4
        )
        figures[f"cascade: answered share, {word}"] = answered
        figures[f"cascade: ROUGE-L of sent replies, {word}"] = quality
    figures["cascade: paid calls saved"] = 1 - arms[True][0] / max(1, arms[False][0])
    figures["cascade: paid cost saved"] = 1 - arms[True][1] / max(1e-12, arms[False][1])
    return figures


def quality_of(outcomes: list[Outcome], references: dict[str, str]) -> tuple[float, float]:
    sent = [o for o in outcomes if o.kind == "sent"]
    scores = [rouge_l(o.record["body"], references[o.email["message_id"]]) for o in sent]
    return len(sent) / len(outcomes), sum(scores) / max(1, len(scores))
