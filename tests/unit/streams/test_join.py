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


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def test_a_half_waiting_longer_than_the_timeout_is_escalated() -> None:
    clock = Clock()
    join = TriageJoin(SETTINGS, timeout_s=8, clock=clock)
    handle(join, half(catalog.CLASSIFIED, 10))

    seen = []
    for _ in range(7):  # 7 s: still waiting
        clock.t += join.tick_s
        seen += join.take_expired()
    assert seen == []
    for _ in range(2):  # 9 s
        clock.t += join.tick_s
        seen += join.take_expired()

    (escalation,) = [o for o in seen if o.topic == catalog.ESCALATE]
    ticket = TICKET.decode(escalation.value)
    assert ticket["escalation_reason"] == "join_timeout"
    assert ticket["escalation_detail"] == "no urgency result after 8s"
    assert join.pending == {}


def test_a_stall_of_the_worker_is_not_counted_as_waiting() -> None:
    """The worker stood still for 7 minutes (its machine paused) with a 120 s timeout:
    the twin, written meanwhile and read after it, still joins."""
    clock = Clock()
    join = TriageJoin(SETTINGS, timeout_s=120, clock=clock)
    join.take_expired()
    handle(join, half(catalog.CLASSIFIED, 10))
    clock.t += join.tick_s
    assert join.take_expired() == []

    clock.t += 7 * 60  # no look, no record handled
    assert join.take_expired() == []
    clock.t += join.tick_s
    assert join.take_expired() == []
    ticket = triaged(handle(join, half(catalog.SCORED, 11)))

    assert ticket["escalation_reason"] is None
    assert ticket["urgency"] is not None


def test_a_half_still_times_out_on_time_after_a_stall() -> None:
    clock = Clock()
    join = TriageJoin(SETTINGS, timeout_s=120, clock=clock)
    join.take_expired()
    handle(join, half(catalog.CLASSIFIED, 10))
    clock.t += 60 * 60  # an hour stood still
    assert join.take_expired() == []

    seen = []
    for _ in range(121):  # then 121 s of looks, one a second: the twin never comes
        clock.t += join.tick_s
        seen += join.take_expired()

    assert [o.topic for o in seen] == [catalog.ESCALATE, catalog.JOIN_CHANGELOG]
