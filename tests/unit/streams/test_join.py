"""The triage join: two halves of one email make one triaged ticket, never one half twice."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.engine.records import Incoming, Output
from streams.settings import Settings
from streams.stages.join import TriageJoin
from streams.stages.ticket import TICKET
from tests import samples
from topics import catalog
from topics import headers as h

SETTINGS = Settings(topic_prefix="t.")


def half(topic: str, offset: int) -> Incoming:
    ticket = samples.ticket()
    if topic == catalog.CLASSIFIED:
        ticket["urgency"] = None
        ticket["decisions"] = [samples.decision("classify")]
    else:
        ticket["classification"] = None
        ticket["decisions"] = [samples.decision("urgency")]
    ticket["model_calls"], ticket["cost"] = 1, 0.001
    key = ticket["message_id"].encode()
    return Incoming(SETTINGS.topic(topic), 2, offset, key, TICKET.encode(ticket), [], 1_000)


def handle(join: TriageJoin, record: Incoming) -> list[Output]:
    return asyncio.run(join.handle(record))


def triaged(outputs: list[Output]) -> dict[str, Any]:
    (only,) = [o for o in outputs if o.topic == catalog.TRIAGED]
    return TICKET.decode(only.value)


def test_the_second_half_joins_the_first_and_clears_the_changelog() -> None:
    join = TriageJoin(SETTINGS, timeout_s=120)

    first = handle(join, half(catalog.CLASSIFIED, 10))
    second = handle(join, half(catalog.SCORED, 11))

    assert [(o.topic, h.get(o.headers, h.JOIN_HALF)) for o in first] == [
        (catalog.JOIN_CHANGELOG, "classified")
    ]
    ticket = triaged(second)
    assert ticket["classification"]["category"] == "billing"
    assert ticket["urgency"]["level"] == "medium"
    assert ticket["model_calls"] == 2
    assert [o.value for o in second if o.topic == catalog.JOIN_CHANGELOG] == [None]
    assert join.pending == {}


def test_a_redelivered_half_waits_for_its_twin_instead_of_joining_itself() -> None:
    """After a crash the classifier's half comes again (restored from the changelog and
    read again from its uncommitted offset): that is still one half, not two."""
    join = TriageJoin(SETTINGS, timeout_s=120)

    handle(join, half(catalog.CLASSIFIED, 10))
    again = handle(join, half(catalog.CLASSIFIED, 10))
    twin = handle(join, half(catalog.SCORED, 11))

    assert again == []
    ticket = triaged(twin)
    assert ticket["urgency"] is not None
    assert ticket["classification"] is not None
    assert ticket["model_calls"] == 2
