"""Schema history: every schema stays backward compatible with all its earlier versions."""

from __future__ import annotations

import copy
import json
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from topics.registry import TOP_LEVEL, SchemaVersion, load_definition, registry


def parse(definition: dict[str, Any]) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(definition))


def compatible(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(parse(reader), parse(writer))
    return bool(result.compatibility is SchemaCompatibilityType.compatible)


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_current_schema_reads_every_earlier_version(name: str) -> None:
    versions = registry().versions(name)
    assert versions, f"no history for {name}: run python -m topics.registry"
    current = load_definition(name)
    for version in versions:
        assert compatible(current, version.definition), f"{name} cannot read v{version.version}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_the_current_schema_is_recorded_in_history(name: str) -> None:
    latest = registry().versions(name)[-1]
    assert latest.canonical == registry().current[name].canonical, (
        f"{name} changed since v{latest.version}; run python -m topics.registry to record it"
    )


def test_the_checker_catches_a_breaking_change() -> None:
    """Negative control: adding a field without a default breaks old records."""
    writer = load_definition("Ticket")
    reader = copy.deepcopy(writer)
    reader["fields"].append({"name": "tenant", "type": "string"})
    assert not compatible(reader, writer)
    reader["fields"][-1]["default"] = ""
    assert compatible(reader, writer)


def test_fingerprint_matches_the_avro_reference_implementation() -> None:
    # Attachment has no logical types, where the two libraries' canonical forms agree.
    definition = {
        "type": "record",
        "name": "mailroom.Attachment",
        "fields": [
            {"name": "filename", "type": "string"},
            {"name": "content_type", "type": "string"},
            {"name": "size_bytes", "type": "long"},
        ],
    }
    ours = SchemaVersion.from_definition("Attachment", 1, definition)
    assert ours.fingerprint == parse(definition).fingerprint("CRC-64-AVRO")


def test_every_fingerprint_names_one_schema() -> None:
    reg = registry()
    names = {v.name for v in reg.by_fingerprint.values()}
    assert names == set(TOP_LEVEL)
