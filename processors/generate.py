"""Generate: a reply composed from the vetted answers that match the email best.

The generator gets the knowledge base's usable answers for the email, most relevant first
(each with its slots already filled, see ``processors.kb``). Draft ``n`` of the loop is
built on answer ``n`` (the best one first; a revision tries the next), between the
brand's greeting and sign-off. Nothing is written that a person did not vet: with no
usable answer there is no draft, and the email goes to a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processors.errors import Rejected
from processors.kb import Hit, compose
from processors.models import DraftRequest, DraftResult

MODEL_NAME = "kb-compose"


@dataclass(frozen=True)
class Grounding:
    """One vetted answer, filled for this email, as a generator may use it."""

    id: str
    title: str
    text: str
    relevance: float


@dataclass(frozen=True)
class Words:
    greeting: str = "Dear {customer_name},"
    anonymous: str = "Hello,"
    sign_off: str = "Kind regards,\nThe Support Team"


def usable(hits: Iterable[Hit], floor: float, slots: Mapping[str, str]) -> list[Grounding]:
    """The hits a reply may be built on, in their order: relevant at or above ``floor``,
    every slot fillable from ``slots`` (see ``Answer.fill``)."""
    found = []
    for hit in hits:
        if hit.relevance >= floor and (text := hit.answer.fill(slots)):
            found.append(Grounding(hit.answer.id, hit.answer.title, text, hit.relevance))
    return found


def generate(request: DraftRequest, grounding: list[Grounding], words: Words) -> DraftResult:
    """Draft ``request.iteration`` (1-based): the answer of that rank, composed."""
    if not grounding:
        raise Rejected("no vetted answer to compose a reply from")
    chosen = grounding[min(request.iteration, len(grounding)) - 1]
    text = compose(
        chosen.text,
        customer_name=request.customer_name,
        greeting=words.greeting,
        anonymous=words.anonymous,
        sign_off=words.sign_off,
    )
    return DraftResult(text=text, sources=(chosen.id,), relevance=chosen.relevance)
