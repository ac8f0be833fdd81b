"""The gates every draft passes in code, whatever model wrote or scored it: relevant to
the email (the vetted answers it names match the email at or above the floor) and
grounded (every link, number, date and promise it states is in the email, in those
answers, or among the company's own details). The quality stage applies them to each
draft; the decider again to the one it would send."""

from __future__ import annotations

from processors.grounding import ungrounded
from streams.models.local import LocalModels
from streams.stages.ticket import Draft, Ticket


def answer_texts(models: LocalModels, ids: list[str]) -> list[str]:
    if models.kb is None:
        return []
    found = (models.kb.get(i) for i in ids)
    return [a.text for a in found if a is not None]


def gates(models: LocalModels, ticket: Ticket, draft: Draft) -> list[str]:
    """Why ``draft`` must not be sent as grounded; empty when it may."""
    email = ticket["email"]
    findings = []
    if models.kb is not None:
        known = answer_texts(models, draft["sources"])
        floor = models.taxonomy.kb.relevance_floor
        if not known:
            findings.append("it names no vetted answer it is built on")
        elif draft["relevance"] is None or draft["relevance"] < floor:
            findings.append(
                f"its answers match the email at {draft['relevance'] or 0:.2f} < {floor:.2f}"
            )
    else:
        known = []
    findings += ungrounded(
        draft["text"],
        email_text=f"{email['subject']}\n{email['body_text']}\n{email['sender']}",
        sources=known,
        allowed=[*models.taxonomy.company.allowed(), *models.taxonomy.company.slots().values()],
    )
    return findings
