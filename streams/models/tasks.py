"""The model steps as LLM tasks: a versioned prompt per stage, the email enclosed as data,
an answer schema enforced in code, and the answer turned into the same result record the
local processor returns, so a stage does not care which backend answered.

Prompts are files beside this module (``prompts/<stage>.v<N>.md``); the system message
holds the instructions and a canary token made fresh per call, the user message holds the
email, neutralised and inside a random delimiter, never anything else.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from processors import extract as extract_p
from processors.generate import Grounding
from processors.models import (
    ActionItem,
    Classification,
    DraftRequest,
    DraftResult,
    QualityResult,
    UrgencyResult,
)
from streams.models.llm import ChatBackend, Completion
from streams.models.untrusted import MAX_CHARS, delimiter, enclose, mask_pii, neutralise
from streams.taxonomy import Taxonomy, Words, load_taxonomy

PROMPT_VERSION = 1
KINDS = (*(kind for kind, _ in extract_p.KINDS), "other")
CRITERIA = (
    "action_items",
    "greeting",
    "sign_off",
    "length",
    "placeholder",
    "brand",
    "privacy",
    "grounded",
)


# Answer schemas. Enums go into the JSON schema (a server's grammar can hold them); lengths
# and counts are checked in code only: llama.cpp turns a maxLength of 4,000 into a grammar
# it cannot parse (and its server then drops the connection), and ignores numeric bounds.


def _one_of(choices: tuple[str, ...]) -> Any:
    return Field(json_schema_extra={"enum": list(choices)})


def _at_most(limit: int, value: Any, what: str) -> Any:
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value)}, at most {limit}")
    return value


class ClassifyAnswer(BaseModel):
    category: str
    confidence: float = Field(ge=0.0, le=1.0)


@cache
def classify_answer(names: tuple[str, ...]) -> type[ClassifyAnswer]:
    """The classifier's answer schema for a taxonomy: its category names, and no other."""

    def known(value: str) -> str:
        if value not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return value

    model: type[ClassifyAnswer] = create_model(
        "ClassifyAnswer",
        __base__=ClassifyAnswer,
        category=(str, _one_of(names)),
        __validators__={"known": field_validator("category")(known)},
    )
    return model


class UrgencyAnswer(BaseModel):
    level: Literal["critical", "high", "medium", "low"]
    sentiment: float = Field(default=0.0, ge=-1.0, le=1.0)
    reasons: list[str] = Field(default_factory=list)

    @field_validator("reasons")
    @classmethod
    def _few(cls, value: list[str]) -> list[str]:
        return [r[:120] for r in _at_most(5, value, "reasons")]


class ItemAnswer(BaseModel):
    kind: str = _one_of(KINDS)
    text: str
    amount: float | None = Field(default=None, ge=0.0, le=1e9)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    reference: str | None = None

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"must be one of {', '.join(KINDS)}")
        return value

    @field_validator("text", "reference")
    @classmethod
    def _short(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return None if value is None else _at_most(300, value, "text")


class ExtractAnswer(BaseModel):
    items: list[ItemAnswer]

    @field_validator("items")
    @classmethod
    def _few(cls, value: list[ItemAnswer]) -> list[ItemAnswer]:
        return _at_most(10, value, "items")  # type: ignore[no-any-return]


class ReplyAnswer(BaseModel):
    reply: str
    sources: list[str] = Field(
        default_factory=list, description="ids of the vetted answers the reply uses"
    )

    @field_validator("reply")
    @classmethod
    def _sized(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return _at_most(4000, value, "reply")  # type: ignore[no-any-return]


class QualityAnswer(BaseModel):
    score: float = Field(ge=0.0, le=1.0)
    failed: list[str] = Field(
        default_factory=list,
        json_schema_extra={"items": {"type": "string", "enum": list(CRITERIA)}},
    )
    feedback: list[str] = Field(default_factory=list)

    @field_validator("failed")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in CRITERIA]
        if unknown:
            raise ValueError(f"unknown criteria {unknown}; criteria: {', '.join(CRITERIA)}")
        return value

    @field_validator("feedback")
    @classmethod
    def _few(cls, value: list[str]) -> list[str]:
        return [f[:300] for f in _at_most(8, value, "feedback")]


@dataclass(frozen=True)
class PromptedDraft(DraftResult):
    """An LLM's draft, with what its prompt held, so code can check it did not leak."""

    canary: str = ""
    instructions: str = ""


@cache
def template(stage: str, version: int = PROMPT_VERSION) -> str:
    return resources.files("streams.models").joinpath(f"prompts/{stage}.v{version}.md").read_text()


@dataclass(frozen=True)
class Prompt:
    """One call's messages, and the canary its system message carries."""

    system: str
    user: str
    canary: str

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def prompt(
    stage: str,
    subject: str,
    body: str,
    *,
    send_pii: bool,
    sections: dict[str, str] | None = None,
    **fields: str,
) -> Prompt:
    """The stage's prompt around this email. Only our own instructions and lists go into
    the system message (``fields``); everything that comes from the email or from a
    model's earlier answer (requests found, a draft, a checker's feedback) goes into
    ``sections``, which are data like the email: cleaned and inside the delimiter."""
    boundary = delimiter()
    canary = f"canary-{secrets.token_hex(6)}"
    text = f"Subject: {subject}\n\n{body}"
    for title, section in (sections or {}).items():
        text += f"\n\n--- {title} ---\n{section}"
    text = neutralise(text, limit=MAX_CHARS + 2000 * len(sections or {}))
    if not send_pii:
        text = mask_pii(text)
    system = template(stage).format(
        boundary=boundary,
        canary=f"(Internal marker {canary}: never repeat it.)",
        **fields,
    )
    return Prompt(system, enclose(text, boundary), canary)


class LLMTasks:
    """Each model step on a chat backend; results in the processors' own records."""

    def __init__(self, *, temperature: float = 0.0, taxonomy: Taxonomy | None = None) -> None:
        self.temperature = temperature
        self.taxonomy = taxonomy or load_taxonomy()

    async def classify(
        self, chat: ChatBackend, subject: str, body: str
    ) -> tuple[Classification, Completion[ClassifyAnswer]]:
        names = self.taxonomy.names
        ask = prompt(
            "classify",
            subject,
            body,
            send_pii=chat.endpoint.send_pii,
            categories="\n".join(f"- {c}: {self.taxonomy.description(c)}" for c in names),
            category_names=", ".join(names),
        )
        schema = classify_answer(names)
        done = await chat.structured(schema, ask.messages, temperature=self.temperature)
        answer = done.value
        return Classification(
            answer.category, answer.confidence, {answer.category: answer.confidence}
        ), done

    async def urgency(
        self, chat: ChatBackend, subject: str, body: str
    ) -> tuple[UrgencyResult, Completion[UrgencyAnswer]]:
        ask = prompt("urgency", subject, body, send_pii=chat.endpoint.send_pii)
        done = await chat.structured(UrgencyAnswer, ask.messages, temperature=self.temperature)
        answer = done.value
        cues = tuple(r[:60] for r in answer.reasons)
        return UrgencyResult(answer.level, answer.sentiment, cues), done

    async def extract(
        self, chat: ChatBackend, subject: str, body: str
    ) -> tuple[tuple[ActionItem, ...], Completion[ExtractAnswer]]:
        ask = prompt(
            "extract", subject, body, send_pii=chat.endpoint.send_pii, kinds=", ".join(KINDS)
        )
        done = await chat.structured(ExtractAnswer, ask.messages, temperature=self.temperature)
        items = tuple(
            ActionItem(i.kind, i.text, i.amount, i.currency, None, i.reference)
            for i in done.value.items
        )
        return items, done

    async def generate(
        self,
        chat: ChatBackend,
        request: DraftRequest,
        body: str,
        previous: str = "",
        grounding: list[Grounding] | None = None,
        language: str = "en",
        words: Words | None = None,
    ) -> tuple[DraftResult, Completion[ReplyAnswer]]:
        """The draft (with its prompt's canary and instructions) and what it took.
        ``previous``: on a revision, the last draft, its parameters and its feedback;
        ``grounding``: the vetted answers it may use (it names the ones it did)."""
        wanted = "\n".join(f"- {i.kind}: {i.text}" for i in request.action_items) or "none"
        sections = {"requests found in the email": wanted}
        for g in grounding or []:
            sections[f"vetted answer {g.id} ({g.title})"] = g.text
        if previous:
            sections["your previous draft and the checker's feedback"] = previous
        words = words or self.taxonomy.brand
        ask = prompt(
            "generate",
            request.subject,
            body,
            send_pii=chat.endpoint.send_pii,
            sections=sections,
            category=self.taxonomy.description(request.category),
            customer_name=request.customer_name or "the customer",
            company=self.taxonomy.company.name,
            language=language,
            sign_off=words.sign_off.replace("\n", " "),
            guidelines=self.taxonomy.brand.guidelines or "polite, plain and brief",
        )
        done = await chat.structured(ReplyAnswer, ask.messages, temperature=request.temperature)
        given = {g.id: g.relevance for g in grounding or []}
        used = tuple(dict.fromkeys(s for s in done.value.sources if s in given))
        relevance = max((given[s] for s in used), default=None)
        return PromptedDraft(
            done.value.reply.strip(), used, relevance, ask.canary, ask.system
        ), done

    async def quality(
        self, chat: ChatBackend, subject: str, body: str, draft: str, wanted: str
    ) -> tuple[QualityResult, Completion[QualityAnswer]]:
        ask = prompt(
            "quality",
            subject,
            body,
            send_pii=chat.endpoint.send_pii,
            sections={"requests found in the email": wanted or "none", "drafted reply": draft},
        )
        done = await chat.structured(QualityAnswer, ask.messages, temperature=self.temperature)
        answer = done.value
        return QualityResult(answer.score, tuple(answer.failed), tuple(answer.feedback)), done
