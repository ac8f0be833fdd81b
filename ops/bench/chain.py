"""The same five model functions, called the way a team without mailroom calls them.

``SlowModels`` wraps the local processors in the seed's world: every call takes 0.2-2 s and
fails one time in eight (``ModelError``), like ``MAILROOM_FAULTS`` does inside mailroom.
``python -m ops.bench.chain`` is the sequential chain a team writes first: one consumer
loop (auto-commit), the five models in turn, no retries; an error is logged and the email
is gone. Outcomes go to the same topics mailroom writes, keyed by message id, so one
reader measures all three systems.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from processors import classify as classify_p
from processors import extract as extract_p
from processors import generate as generate_p
from processors import quality as quality_p
from processors import urgency as urgency_p
from processors.generate import Words, usable
from processors.models import ActionItem, DraftRequest, Email, QualityRequest
from processors.prefilter import prefilter
from streams.models.local import LocalModels
from streams.stages.ticket import customer_name
from topics import catalog

log = logging.getLogger("bench.chain")
FIRST = "first email at "  # + epoch seconds: when a system took its first email in


class ModelError(Exception):
    """A transient model failure (timeout, 5xx, rate limit)."""


@dataclass
class World:
    latency_s: tuple[float, float] = (0.2, 2.0)
    error_rate: float = 0.12

    def faults(self) -> str:
        """The same world as a ``MAILROOM_FAULTS`` value."""
        low, high = (int(x * 1000) for x in self.latency_s)
        one = f"error_rate={self.error_rate},latency_ms={low}..{high}"
        return ";".join(
            f"{s}:{one}" for s in ("classify", "urgency", "extract", "generate", "quality")
        )


class SlowModels:
    def __init__(self, data_dir: Path, world: World, seed: int | None = None) -> None:
        self.local = LocalModels(data_dir)
        self.world = world
        self.random = random.Random(seed)

    def _slow(self, name: str) -> None:
        time.sleep(self.random.uniform(*self.world.latency_s))
        if self.random.random() < self.world.error_rate:
            raise ModelError(f"{name} model failed (transient)")

    def prefilter(self, email: dict[str, Any]) -> str | None:
        """None to go on, else the reason it is ignored (rules: no model, no delay)."""
        result = prefilter(
            Email(email["message_id"], email["sender"], email["subject"], email["body_text"])
        )
        return None if result.accepted else result.reason

    def classify(self, email: dict[str, Any]) -> str:
        self._slow("classify")
        model = self.local.classifier
        return classify_p.classify(email["subject"], email["body_text"], model=model).category

    def urgency(self, email: dict[str, Any]) -> str:
        self._slow("urgency")
        sentiment = self.local.sentiment
        return urgency_p.score_urgency(
            email["subject"], email["body_text"], sentiment=sentiment
        ).level

    def extract(self, email: dict[str, Any]) -> list[dict[str, Any]]:
        self._slow("extract")
        return [asdict(i) for i in extract_p.extract(email["subject"], email["body_text"])]

    def generate(self, email: dict[str, Any], category: str, items: list[dict[str, Any]]) -> str:
        self._slow("generate")
        request = DraftRequest(
            message_id=email["message_id"],
            category=category,
            customer_name=customer_name(email["sender"]),
            subject=email["subject"],
            action_items=tuple(ActionItem(**i) for i in items),
            iteration=1,
            temperature=0.7,
            feedback=(),
        )
        kb, taxonomy = self.local.kb, self.local.taxonomy
        if kb is None:
            return ""
        slots = {**taxonomy.company.slots(), "customer_name": request.customer_name}
        hits = kb.search(f"{email['subject']}\n{email['body_text']}", k=3)
        grounding = usable(hits, taxonomy.kb.relevance_floor, slots)
        if not grounding:
            return ""  # nothing vetted to answer with: a person writes
        brand = taxonomy.brand
        words = Words(brand.greeting, brand.anonymous_greeting, brand.sign_off)
        return generate_p.generate(request, grounding, words).text

    def quality(
        self, email: dict[str, Any], draft: str, items: list[dict[str, Any]]
    ) -> float | None:
        if not draft:
            return None
        self._slow("quality")
        sender = email["sender"]
        request = QualityRequest(
            draft, tuple(ActionItem(**i) for i in items), sender, customer_name(sender)
        )
        return quality_p.check(request, banned=self.local.banned_phrases).score


def outcome_of(urgency: str, score: float | None) -> str:
    """Where the chain's email ends: critical or a weak draft go to a person."""
    if urgency == "critical" or score is None or score < 0.7:
        return catalog.ESCALATIONS
    return catalog.RESPONSES


def sequential(email: dict[str, Any], models: SlowModels) -> tuple[str, dict[str, Any]]:
    """The chain: (topic, outcome). Any ModelError propagates: no retries."""
    ignored = models.prefilter(email)
    if ignored:
        return catalog.IGNORED, {"reason": ignored}
    category = models.classify(email)
    level = models.urgency(email)
    if level == "critical":
        return catalog.ESCALATIONS, {"reason": "critical_urgency"}
    items = models.extract(email)
    draft = models.generate(email, category, items)
    score = models.quality(email, draft, items)
    return outcome_of(level, score), {"category": category, "score": score}


def main() -> None:
    """The house of cards: ``python -m ops.bench.chain`` (settings from MAILROOM_*)."""
    from confluent_kafka import Consumer, Producer

    from streams.settings import Settings
    from topics.codec import InboundCodec

    settings = Settings()
    world = World(**json.loads(sys.argv[1])) if len(sys.argv) > 1 else World()
    models = SlowModels(settings.data_dir, world)
    _ = models.local.classifier, models.local.sentiment
    consumer = Consumer(
        settings.confluent_config(
            **{"group.id": f"{settings.app_id}-chain", "auto.offset.reset": "earliest"}
        )
    )
    producer = Producer(settings.confluent_config(**{"acks": "all"}))
    consumer.subscribe([settings.topic(catalog.INBOUND)])
    codec = InboundCodec()
    print("chain: ready", flush=True)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    first = True
    while not stopping:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if first:
            print(f"chain: {FIRST}{time.time():.3f}", flush=True)
            first = False
        try:
            email = codec.decode_inbound(msg.value(), key=msg.key(), timestamp_ms=0)
            topic, result = sequential(email, models)
        except Exception as exc:  # what the first version does: log it, move on
            print(f"chain: {msg.key()!r} failed: {exc}", flush=True)
            continue
        producer.produce(settings.topic(topic), json.dumps(result).encode(), msg.key())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
