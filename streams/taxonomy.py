"""A team's taxonomy, from one file: ``mailroom.toml`` (path from ``MAILROOM_CONFIG``).

It declares the categories (name, the description LLM prompts use, the route topic),
which urgency levels go straight to a person, the escalation policy (confidence floor,
refund limit, categories that always go to a person), the brand guidelines, the company a
reply speaks for, the knowledge base of vetted answers, and the classifier a worker loads.
Endpoints and model chains (``[endpoints.<name>]``, ``[chains]``) may live here too; the
``MAILROOM_*`` variables override them. Without a file, the sample company's taxonomy that
ships with mailroom (``streams/sample/mailroom.toml``, the demo's) is used.

A file that cannot be used is refused when the settings are read, with the field and
what is wrong with it, so nothing starts on half a configuration.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import string
import tomllib
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import PydanticBaseSettingsSource

from processors.escalate import Policy
from topics import catalog
from topics.errors import MailroomError

SAMPLE = Path(__file__).resolve().parent / "sample" / "mailroom.toml"
Level = Literal["critical", "high", "medium", "low"]
ROUTE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,48}$")


class TaxonomyError(MailroomError):
    """A ``mailroom.toml`` that cannot be used, with the field and what is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def slug(name: str) -> str:
    """A route name for a category name: ``Billing and Payments`` -> ``billing_and_payments``,
    ``Rückerstattung`` -> ``ruckerstattung``; "" for a name of no letter a-z or digit."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", folded.lower()).strip("_")[:48]


class Category(_Section):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    route: str = Field(default="", description="route topic suffix; default: from the name")

    @model_validator(mode="after")
    def _route(self) -> Category:
        if not self.route:
            if not slug(self.name):  # 請求 would have been routed with the catch-all
                raise ValueError(
                    f"{self.name!r} has no letter a-z or digit to name its route topic; "
                    'give it one: route = "billing"'
                )
            object.__setattr__(self, "route", slug(self.name))
        if not ROUTE.match(self.route):
            raise ValueError(
                f"route {self.route!r} of {self.name!r} must be lower-case letters, digits, "
                "_ or - (it names the topic emails.route.<route>)"
            )
        return self


class Urgency(_Section):
    to_person: tuple[Level, ...] = Field(
        default=("critical",), description="levels that skip generation and go to a person"
    )


class Escalation(_Section):
    confidence_floor: float = Field(default=0.8, ge=0.0, le=1.0)
    refund_limit: float = Field(default=500.0, ge=0.0)
    min_draft_score: float = Field(default=0.7, ge=0.0, le=1.0)
    always_human: tuple[str, ...] = Field(
        default=(), description="categories that always go to a person"
    )


class Words(_Section):
    """How a reply opens and closes, in one language."""

    greeting: str = "Dear {customer_name},"
    anonymous_greeting: str = "Hello,"
    sign_off: str = "Kind regards,\nThe Support Team"

    @model_validator(mode="after")
    def _slots(self) -> Words:
        # only {customer_name} itself: an attribute, an index or a format of it
        # ({customer_name:>999999999}) would be applied to what an email says its name is
        try:
            fields = [(n, s, c) for _, n, s, c in string.Formatter().parse(self.greeting)]
        except ValueError as exc:
            raise ValueError(f"greeting: {exc} (write {{{{ for a brace)") from exc
        for name, spec, conv in fields:
            if name is not None and (name != "customer_name" or spec or conv):
                found = (
                    "{" + name + ("!" + conv if conv else "") + (":" + spec if spec else "") + "}"
                )
                raise ValueError(f"greeting may hold only {{customer_name}} (found {found})")
        return self


class Brand(Words):
    banned_phrases: tuple[str, ...] = ()
    guidelines: str = Field(default="", max_length=2000, description="for LLM prompts")
    languages: dict[str, Words] = Field(
        default_factory=dict, description="greeting and sign-off per language code"
    )

    def words(self, language: str | None) -> Words:
        return self.languages.get(language or "", self)


class Company(_Section):
    name: str = "Support"
    support_address: str = ""
    phone: str = ""
    website: str = ""

    def slots(self) -> dict[str, str]:
        """What a vetted answer may name about the company (``{company}``, ...)."""
        values = {
            "company": self.name,
            "support_address": self.support_address,
            "support_phone": self.phone,
            "website": self.website,
        }
        return {k: v for k, v in values.items() if v}

    def allowed(self) -> tuple[str, ...]:
        """What a reply may name although the email does not: the company's own."""
        host = re.sub(r"^(?:[a-z]+://)?(?:www\.)?", "", self.website.lower()).split("/")[0]
        return tuple(v for v in (self.support_address, self.phone, host) if v)


class Knowledge(_Section):
    source: Path | None = Field(
        default=None,
        description="a folder of Markdown answers, one YAML file, or a CSV/JSONL of answered "
        "tickets; relative to this file",
    )
    question: str = Field(default="question", description="tickets: the question's column(s)")
    answer: str = Field(default="answer", description="tickets: the answer's column")
    category: str = Field(default="", description="tickets: the category column, if any")
    relevance_floor: float = Field(
        default=0.3, ge=0.0, le=2.0, description="below: no grounded answer, a person writes"
    )
    exact: float = Field(
        default=0.9,
        ge=0.0,
        le=2.0,
        description="at or above: the vetted answer is sent without a paid generator, and "
        "is evidence enough of the topic when the classifier is unsure",
    )
    languages: tuple[str, ...] = Field(default=("en",), min_length=1)

    @model_validator(mode="after")
    def _source(self) -> Knowledge:
        if self.source is not None and "\x00" in str(self.source):
            raise ValueError("source: a path cannot hold a NUL character")
        return self


class Cascade(_Section):
    """The cheap first pass that decides which paid models an email needs (with
    ``MAILROOM_CASCADE``): a local classification at least this sure skips a paid
    classifier; a vetted answer at least ``[kb] exact`` relevant skips a paid generator."""

    confidence: float = Field(default=0.8, ge=0.0, le=1.0)


class Taxonomy(_Section):
    categories: tuple[Category, ...] = Field(min_length=1)
    urgency: Urgency = Urgency()
    escalation: Escalation = Escalation()
    brand: Brand = Brand()
    company: Company = Company()
    kb: Knowledge = Knowledge()
    cascade: Cascade = Cascade()
    classifier: str | None = Field(
        default=None, description="id of a model from `mailroom models train`; default built-in"
    )
    endpoints: dict[str, Any] = Field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: the file this came from (None: built in)
    path: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        names = [c.name for c in self.categories]
        twice = sorted(n for n, count in Counter(names).items() if count > 1)
        if twice:
            raise ValueError(f"categories: {', '.join(twice)} declared twice")
        unknown = [c for c in self.escalation.always_human if c not in names]
        if unknown:
            raise ValueError(
                f"escalation.always_human names {unknown}, which are not categories "
                f"({', '.join(names)})"
            )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.route for c in self.categories))

    def route_of(self, category: str | None) -> str:
        """The route of a category; a category with no route (unknown, or none) -> other."""
        for declared in self.categories:
            if declared.name == category:
                return declared.route
        return catalog.OTHER

    def description(self, category: str) -> str:
        for declared in self.categories:
            if declared.name == category:
                return declared.description or declared.name
        return category

    def policy(self) -> Policy:
        return Policy(
            min_confidence=self.escalation.confidence_floor,
            refund_limit=self.escalation.refund_limit,
            min_draft_score=self.escalation.min_draft_score,
            always_human=self.escalation.always_human,
            to_person=self.urgency.to_person,
            sure_relevance=self.kb.exact if self.kb.source is not None else None,
        )

    def kb_source(self) -> Path | None:
        source = self.kb.source
        if source is None or source.is_absolute() or self.path is None:
            return source
        return (self.path.parent / source).resolve()


def _where(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(file)"


def describe(exc: ValidationError, path: Path) -> str:
    """One line per problem: ``<file>: <field>: <what is wrong> (got <value>)``."""
    lines = []
    for error in exc.errors():
        got = error.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r:.60})"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}: {_where(error)}: {message}{shown}")
    return "\n".join(lines)


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> Taxonomy:
    try:
        data = tomllib.loads(path.read_text("utf-8-sig"))
    # nested past the stack, an integer past Python's 4,300 digits: not TOML to use either
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise TaxonomyError(f"{path}: not UTF-8 text: {exc}") from exc
        raise TaxonomyError(f"{path}: not valid TOML: {str(exc)[:200]}") from exc
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    try:
        return Taxonomy.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise TaxonomyError(describe(exc, path)) from exc


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """The taxonomy of ``path`` (the sample company's when None); cached per file version."""
    given = path or SAMPLE
    try:
        path = given.expanduser().resolve()
        mtime = path.stat().st_mtime_ns
    except RuntimeError as exc:  # a link loop, a home folder of no user (~nobody-here)
        raise TaxonomyError(f"{given}: {exc} (MAILROOM_CONFIG)") from None
    except (FileNotFoundError, NotADirectoryError):
        raise TaxonomyError(f"{path}: no such file (MAILROOM_CONFIG)") from None
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise TaxonomyError(f"{path}: a folder; MAILROOM_CONFIG names a mailroom.toml file")
    return _load(path, mtime)


def categories_section(labels: list[str]) -> str:
    """A ``[[categories]]`` section for a label set, to paste into ``mailroom.toml``; each
    route distinct. A label that cannot name a category (over 100 characters, say) is
    refused here, before a file ``load_taxonomy`` would refuse is written."""
    lines = [f"# {len(labels)} categories, one per label the model was trained on.", ""]
    routes: set[str] = set()
    for label in labels:
        try:
            Category(name=label, description=label.replace("_", " ")[:500])
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise TaxonomyError(
                f"label {label[:60]!r} cannot name a category: {problem}; relabel those rows"
            ) from exc
        route = base = slug(label) or "category"
        for n in itertools.count(2):
            if route not in routes:
                break
            route = f"{base[:44]}_{n}"
        routes.add(route)
        lines += [
            "[[categories]]",
            f"name = {_toml_string(label)}",
            f"description = {_toml_string(label.replace('_', ' ')[:500])}",
            f'route = "{route}"',
            "",
        ]
    return "\n".join(lines)


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, and DEL must be escaped too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


class ConfigFile(PydanticBaseSettingsSource):
    """The settings ``mailroom.toml`` may hold (``[endpoints.<name>]``, ``[chains]``,
    ``classifier``), below keyword arguments and ``MAILROOM_*`` variables."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read at once, in __call__

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config") or os.environ.get("MAILROOM_CONFIG")
        taxonomy = load_taxonomy(Path(path) if path else None)
        found: dict[str, Any] = {}
        if taxonomy.endpoints:
            found["endpoints"] = taxonomy.endpoints
        if taxonomy.chains:
            found["models"] = taxonomy.chains
        if taxonomy.classifier:
            found["classifier"] = taxonomy.classifier
        return found
