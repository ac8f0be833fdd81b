"""The support tickets (../shared/data/tobi_bueck_customer_support_tickets): a team that
brings its queues, its labelled tickets and its agents' answers.

A fixed stratified 25% of the tickets (by queue, seed 0) is held out. The rest trains the
queue classifier (``mailroom models train``, whose ``--taxonomy-out`` writes the
categories) and becomes the knowledge base (``mailroom kb index``: every agent's answer,
its ticket the question it answers). The relevance floor is chosen on the training tickets
alone: the one at which 65% of them find an answer among the others' (and the "exact"
level, above which no paid generator is needed, the one 35% of them reach). The held-out
tickets
then go through every stage; for each sent reply, ROUGE-L against the answer the agent
sent, beside the same for the template reply mailroom sent before.

The team's brand sends vetted answers as its agents wrote them (no greeting or sign-off
added: most of these answers open with their own greeting and none signs off).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.eval.common import (
    BOILERPLATE,
    DATA,
    Outcome,
    classifier,
    email,
    mailroom,
    read_csv,
    reasons,
    rouge_l,
    run_emails,
    split,
)
from streams.models.knowledge import build_index
from streams.settings import Settings

FILE = DATA / "tobi_bueck_customer_support_tickets" / "tickets_v4_en.csv"
ANSWERED_SHARE = 0.65  # of the training tickets, for the relevance floor
EXACT_SHARE = 0.35  # of the training tickets, for an answer sent without a paid generator
TEAM = """
[company]
name = "Tech Support"
support_address = "support@example.com"
phone = "+1 555 0100"

[brand]
greeting = ""
anonymous_greeting = ""
sign_off = ""

[escalation]
# The queue only routes: a queue the classifier is unsure of does not hold an answer back.
confidence_floor = 0.0

[cascade]
confidence = 0.5

[kb]
source = "{source}"
question = "subject,body"
answer = "answer"
category = "queue"
relevance_floor = {floor}
exact = {exact}
languages = ["en"]
"""


@dataclass
class TicketsRun:
    figures: dict[str, Any]
    outcomes: list[Outcome]
    settings: Settings
    references: dict[str, str]  # message id -> the agent's answer


def run(work: Path) -> TicketsRun:
    rows = read_csv(FILE)
    train, test = split(rows, "queue")
    queues = classifier(work, "tickets", train, test, "--text", "subject,body", "--label", "queue")
    model = queues.model
    config = work / "tickets.toml"

    def write_team(floor: float, exact: float) -> None:
        source = work / "tickets-train.csv"  # the training split, as `classifier` wrote it
        team = TEAM.format(source=source, floor=round(floor, 4), exact=round(exact, 4))
        config.write_text(queues.categories.read_text() + team)

    write_team(0.3, 0.9)
    mailroom(work, "kb", "index", MAILROOM_CONFIG=str(config))
    settings = Settings(data_dir=work, tracing=False, config=config, classifier=model)
    built = build_index(work, settings.taxonomy)
    floor = (built.index.floor_for(ANSWERED_SHARE) if built else None) or 0.3
    exact = (built.index.floor_for(EXACT_SHARE) if built else None) or 0.9
    write_team(floor, exact)
    settings = Settings(data_dir=work, tracing=False, config=config, classifier=model)
    emails = [email(n, r["subject"], r["body"]) for n, r in enumerate(test)]
    references = {e["message_id"]: r["answer"] for e, r in zip(emails, test, strict=True)}
    outcomes = run_emails(settings, emails)
    sent = [o for o in outcomes if o.kind == "sent"]
    scores = [rouge_l(o.record["body"], references[o.email["message_id"]]) for o in sent]
    template_sent = [rouge_l(BOILERPLATE, references[o.email["message_id"]]) for o in sent]
    template_all = [rouge_l(BOILERPLATE, r["answer"]) for r in test]
    figures = {
        "tickets queue macro-F1": queues.figures["macro_f1"],
        "tickets relevance floor (from training)": round(floor, 4),
        "tickets exact-answer relevance (from training)": round(exact, 4),
        "tickets answered share": len(sent) / len(test),
        "tickets ROUGE-L of sent replies": sum(scores) / max(1, len(scores)),
        "tickets ROUGE-L of the template, same tickets": sum(template_sent) / max(1, len(sent)),
        "tickets ROUGE-L of the template, all tickets": sum(template_all) / len(test),
        **urgency_against_priority(outcomes, test),
        "tickets escalated by reason": reasons(outcomes),
    }
    return TicketsRun(figures, outcomes, settings, references)


def urgency_against_priority(outcomes: list[Outcome], test: list[dict[str, str]]) -> dict[str, Any]:
    """The urgency scorer against the tickets' priority (low/medium/high; critical counts
    as high, the data has no critical)."""
    from sklearn.metrics import accuracy_score, f1_score

    truth = [r["priority"] for r in test]
    said = [{"critical": "high"}.get(o.urgency or "", o.urgency or "none") for o in outcomes]
    return {
        "tickets urgency accuracy vs priority": float(accuracy_score(truth, said)),
        "tickets urgency macro-F1 vs priority": float(
            f1_score(truth, said, labels=["low", "medium", "high"], average="macro")
        ),
    }
