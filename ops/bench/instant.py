"""A worker whose models answer at once: what the orchestration itself costs an email.

Every handler, the join, the router, the loop, the decider and its ledger, the code's
checks on every draft, the gate (budget, breaker, span, log line) and the runtime run as
in ``mailroom worker``; only the models are stand-ins that answer without working:

    classify      a category by the hash of the email's text, confidence 0.99
    urgency       "low", sentiment 0
    extract       no action items
    language      the knowledge base's first language
    kb search     the answers found once, at start, for a fixed question
    generate      the first usable vetted answer, as written
    quality       0.95, nothing failed

    python -m ops.bench.instant [worker args]      (the settings from MAILROOM_*)
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from typing import Any

import processors.classify as classify_p
import processors.extract as extract_p
import processors.generate as generate_p
import processors.quality as quality_p
import processors.urgency as urgency_p
import streams.stages.triage as triage_stage
from processors.kb import Hit, Index
from processors.models import Classification, DraftResult, QualityResult, UrgencyResult
from streams.taxonomy import load_taxonomy

NORMAL = UrgencyResult("low", 0.0, ())
APPROVED = QualityResult(0.95, (), ())
#: What the knowledge base is asked once, at start; its answers stand for every email's.
QUESTION = "I was charged twice for my subscription this month, please refund one charge"


def install() -> None:
    """Put the stand-ins where the stages call the models."""
    taxonomy = load_taxonomy()
    names = list(taxonomy.names)
    language = taxonomy.kb.languages[0]

    def category(subject: str, body: str) -> str:
        digest = hashlib.blake2b(f"{subject}\n{body}".encode(), digest_size=2).digest()
        return names[int.from_bytes(digest, "big") % len(names)]

    def classify_many(emails: Sequence[tuple[str, str]], *, model: Any) -> list[Classification]:
        found = []
        for subject, body in emails:
            chosen = category(subject, body)
            found.append(Classification(chosen, 0.99, {chosen: 0.99}))
        return found

    put(classify_p, "classify_many", classify_many)
    put(urgency_p, "score_urgency", lambda subject, body, *, sentiment: NORMAL)
    put(extract_p, "extract", lambda subject, body: ())
    put(triage_stage, "identify", lambda text: language)

    real_search = Index.search_many
    answers: dict[int, list[list[Hit]]] = {}

    def search_many(self: Index, texts: list[str], **options: Any) -> list[list[Hit]]:
        if id(self) not in answers:
            answers[id(self)] = real_search(self, [QUESTION], **options)
        return [answers[id(self)][0] for _ in texts]

    put(Index, "search_many", search_many)

    def generate(request: Any, grounding: list[generate_p.Grounding], words: Any) -> DraftResult:
        first = grounding[0]
        return DraftResult(first.text, (first.id,), first.relevance)

    put(generate_p, "generate", generate)
    put(quality_p, "check", lambda request, **options: APPROVED)


def put(owner: object, name: str, stand_in: Any) -> None:
    """``owner.name`` is ``stand_in`` from now on (it must be there to be replaced)."""
    if not hasattr(owner, name):
        raise AttributeError(f"{owner!r} has no {name}: the stand-ins are out of date")
    setattr(owner, name, stand_in)


def main() -> None:
    install()
    from streams.cli import main as cli

    sys.argv = ["mailroom", *(sys.argv[1:] or ["worker"])]
    cli()


if __name__ == "__main__":
    main()
