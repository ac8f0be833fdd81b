from __future__ import annotations

import re

import pytest

from topics import catalog
from topics.registry import TOP_LEVEL


def test_retry_and_dlq_names_derive_from_the_stage() -> None:
    spec = catalog.stage("classify")
    assert spec.retry_topics(3) == ("classify.retry.1", "classify.retry.2", "classify.retry.3")
    assert spec.dlq_topic == "classify.dlq"
    with pytest.raises(ValueError, match="count from 1"):
        spec.retry_topic(0)


def test_every_stage_topic_is_in_the_catalog() -> None:
    names = {t.name for t in catalog.all_topics(3)}
    for spec in catalog.STAGES:
        assert set(spec.inputs) <= names, spec.name
        assert set(spec.outputs) <= names, spec.name
        assert set(spec.retry_topics(3)) | {spec.dlq_topic} <= names


def test_topic_names_are_unique_and_well_formed() -> None:
    names = [t.name for t in catalog.all_topics(3)]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)*", n) for n in names), names


def test_every_record_topic_names_a_known_schema() -> None:
    assert {t.schema for t in catalog.all_topics(3) if t.schema} <= set(TOP_LEVEL)


def test_terminal_topics_are_responses_escalations_ignored_and_dead_letters() -> None:
    terminal = set(catalog.terminal_topics())
    dlqs = {s.dlq_topic for s in catalog.STAGES}
    assert terminal == {"responses", "escalations", "emails.ignored"} | dlqs


def test_email_topics_have_six_partitions() -> None:
    keyed_by_message = [t for t in catalog.all_topics(3) if t.key == "message_id"]
    assert all(t.partitions == 6 for t in keyed_by_message)
    assert catalog.topic(catalog.BUDGET_SPEND).partitions == 1


def test_the_router_has_one_topic_per_category() -> None:
    assert catalog.stage("route").outputs == (
        "emails.route.critical",
        *(f"emails.route.{c}" for c in catalog.CATEGORIES),
    )
    with pytest.raises(ValueError, match="unknown route"):
        catalog.route_topic("refunds")
