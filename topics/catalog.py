"""Every topic of the default topology, and the stages that join them.

One ``TopicSpec`` per topic. Per-stage retry and dead-letter topics are derived from the
``StageSpec`` (``<stage>.retry.<n>``, ``<stage>.dlq``), never typed by hand. Every email
topic has 6 partitions and is keyed by message id, so one email stays on one partition
number across topics and the classifier/urgency join is co-partitioned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Role = Literal["input", "internal", "terminal", "retry", "dlq"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
EMAIL_PARTITIONS = 6

#: The default taxonomy's categories; a ``mailroom.toml`` declares a team's own.
CATEGORIES = ("billing", "technical", "account", "feature_request", "other")
#: Where an email whose category has no route goes: this route always exists.
OTHER = "other"
URGENCY_LEVELS = ("critical", "high", "medium", "low")


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, the record type of its values, and how it is kept."""

    name: str
    schema: str | None
    role: Role
    doc: str
    partitions: int = EMAIL_PARTITIONS
    retention_ms: int = 7 * DAY_MS
    key: str = "message_id"
    compacted: bool = False

    @property
    def terminal(self) -> bool:
        return self.role in ("terminal", "dlq")


INBOUND = "emails.inbound"
ACCEPTED = "emails.accepted"
IGNORED = "emails.ignored"
CLASSIFIED = "emails.classified"
SCORED = "emails.scored"
TRIAGED = "emails.triaged"
ROUTE_CRITICAL = "emails.route.critical"
EXTRACTED = "emails.extracted"
ESCALATE = "emails.escalate"
DRAFTS_GENERATED = "drafts.generated"
DRAFTS_REVISE = "drafts.revise"
DRAFTS_APPROVED = "drafts.approved"
JOIN_CHANGELOG = "join.changelog"
BUDGET_SPEND = "budget.spend"
RESPONSES = "responses"
ESCALATIONS = "escalations"


def route_topic(route: str) -> str:
    """The router's output topic for a route (``emails.route.billing``, ...)."""
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    return f"emails.route.{route}"


def _topics(routes: tuple[str, ...]) -> tuple[TopicSpec, ...]:
    return (
        TopicSpec(INBOUND, "FeedbackEmail", "input", "customer emails, Avro or JSON"),
        TopicSpec(
            IGNORED,
            "Ticket",
            "terminal",
            "no model spent: auto-replies, bounces, spam",
            retention_ms=30 * DAY_MS,
        ),
        TopicSpec(ACCEPTED, "Ticket", "internal", "emails worth answering, fanned out to triage"),
        TopicSpec(CLASSIFIED, "Ticket", "internal", "classifier half of the triage join"),
        TopicSpec(SCORED, "Ticket", "internal", "urgency/sentiment half of the triage join"),
        TopicSpec(TRIAGED, "Ticket", "internal", "category + urgency, ready to route"),
        TopicSpec(
            ROUTE_CRITICAL, "Ticket", "internal", "critical urgency or policy: straight to a person"
        ),
        *(
            TopicSpec(f"emails.route.{r}", "Ticket", "internal", f"routed by category: {r}")
            for r in routes
        ),
        TopicSpec(EXTRACTED, "Ticket", "internal", "action items, amounts, dates, accounts"),
        TopicSpec(DRAFTS_GENERATED, "Ticket", "internal", "a reply draft to check"),
        TopicSpec(DRAFTS_REVISE, "Ticket", "internal", "checker feedback for the next draft"),
        TopicSpec(DRAFTS_APPROVED, "Ticket", "internal", "a draft good enough to send"),
        TopicSpec(ESCALATE, "Ticket", "internal", "a stage asks for a human, with a reason"),
        TopicSpec(
            JOIN_CHANGELOG,
            "Ticket",
            "internal",
            "triage-join state: halves waiting",
            compacted=True,
        ),
        TopicSpec(
            BUDGET_SPEND,
            None,
            "internal",
            "cost events of paid model calls, by day",
            partitions=1,
            key="day",
        ),
        TopicSpec(RESPONSES, "Response", "terminal", "auto-sent replies", retention_ms=30 * DAY_MS),
        TopicSpec(
            ESCALATIONS, "Escalation", "terminal", "the human queue", retention_ms=30 * DAY_MS
        ),
    )


@dataclass(frozen=True)
class StageSpec:
    """A stage: the topics it reads and writes; its retry and DLQ topics derive from it."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def retry_topic(self, attempt: int) -> str:
        if attempt < 1:
            raise ValueError("retry attempts count from 1")
        return f"{self.name}.retry.{attempt}"

    def retry_topics(self, tiers: int) -> tuple[str, ...]:
        return tuple(self.retry_topic(n) for n in range(1, tiers + 1))

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"


def _stages(route_topics: tuple[str, ...]) -> tuple[StageSpec, ...]:
    return (
        StageSpec("prefilter", (INBOUND,), (ACCEPTED, IGNORED)),
        StageSpec("classify", (ACCEPTED,), (CLASSIFIED,)),
        StageSpec("urgency", (ACCEPTED,), (SCORED,)),
        StageSpec("join", (CLASSIFIED, SCORED), (TRIAGED, ESCALATE, JOIN_CHANGELOG)),
        StageSpec("route", (TRIAGED,), (ROUTE_CRITICAL, *route_topics)),
        StageSpec("extract", route_topics, (EXTRACTED,)),
        StageSpec("generate", (EXTRACTED, DRAFTS_REVISE), (DRAFTS_GENERATED,)),
        StageSpec("quality", (DRAFTS_GENERATED,), (DRAFTS_APPROVED, DRAFTS_REVISE, ESCALATE)),
        StageSpec(
            "escalate",
            (ROUTE_CRITICAL, DRAFTS_APPROVED, ESCALATE),
            (RESPONSES, ESCALATIONS),
        ),
    )


def configure_routes(routes: Iterable[str]) -> None:
    """Derive the route topics (and the stages that read and write them) from a
    taxonomy's routes; ``other`` is always one. Called once per process, at start."""
    global ROUTES, ROUTE_TOPICS, TOPICS, STAGES
    ROUTES = tuple(dict.fromkeys([*routes, OTHER]))
    ROUTE_TOPICS = tuple(f"emails.route.{r}" for r in ROUTES)
    TOPICS = _topics(ROUTES)
    STAGES = _stages(ROUTE_TOPICS)


ROUTES: tuple[str, ...] = CATEGORIES
ROUTE_TOPICS: tuple[str, ...] = tuple(f"emails.route.{r}" for r in ROUTES)
TOPICS: tuple[TopicSpec, ...] = _topics(ROUTES)
STAGES: tuple[StageSpec, ...] = _stages(ROUTE_TOPICS)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stage(name: str) -> StageSpec:
    for spec in STAGES:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown stage {name!r}; known: {', '.join(STAGE_NAMES)}")


def retry_topic(spec: StageSpec, tier: int) -> TopicSpec:
    return TopicSpec(
        spec.retry_topic(tier), None, "retry", f"{spec.name} attempt {tier + 1}, delayed"
    )


def dlq_topic(spec: StageSpec) -> TopicSpec:
    return TopicSpec(
        spec.dlq_topic,
        None,
        "dlq",
        f"{spec.name} dead letters, replayable",
        retention_ms=30 * DAY_MS,
    )


def stage_topics(spec: StageSpec, tiers: int) -> Iterator[TopicSpec]:
    """The retry tiers and the dead-letter topic of one stage."""
    for tier in range(1, tiers + 1):
        yield retry_topic(spec, tier)
    yield dlq_topic(spec)


def all_topics(tiers: int) -> tuple[TopicSpec, ...]:
    """Every topic ``mailroom topics create`` makes, in a stable order."""
    derived = [t for spec in STAGES for t in stage_topics(spec, tiers)]
    return (*TOPICS, *derived)


def topic(name: str) -> TopicSpec:
    """The spec of any topic of the catalog, a retry tier of any number included."""
    for spec in TOPICS:
        if spec.name == name:
            return spec
    for stage_spec in STAGES:
        if name == stage_spec.dlq_topic:
            return dlq_topic(stage_spec)
        tier = name.removeprefix(f"{stage_spec.name}.retry.")
        if tier != name and tier.isdigit() and int(tier) > 0:
            return retry_topic(stage_spec, int(tier))
    raise KeyError(f"unknown topic {name!r}")


def terminal_topics() -> tuple[str, ...]:
    """Where an email may end: the ledger invariant is exactly one of these per message id.
    Dead-letter topics count: a dead letter waits there for a person."""
    return (*(t.name for t in TOPICS if t.terminal), *(s.dlq_topic for s in STAGES))
