"""Schema history: every schema stays backward compatible with all its earlier versions."""

from __future__ import annotations

import copy
import json

import pytest

from topics import registry as registry_module
from topics.errors import IncompatibleSchemaError
from topics.registry import TOP_LEVEL, SchemaVersion, compatible, load_definition, registry


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
    import avro.schema

    reference = avro.schema.parse(json.dumps(definition))
    assert ours.fingerprint == reference.fingerprint("CRC-64-AVRO")


def test_every_fingerprint_names_one_schema() -> None:
    reg = registry()
    names = {v.name for v in reg.by_fingerprint.values()}
    assert names == set(TOP_LEVEL)


def test_recording_a_breaking_change_is_refused(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m topics.registry`` will not record a schema that cannot read v1."""
    history = registry_module.HISTORY_DIR
    broken = copy.deepcopy(load_definition("Response"))
    broken["fields"] = [f for f in broken["fields"] if f["name"] != "body"]
    broken["fields"].append({"name": "required_new", "type": "string"})  # no default
    monkeypatch.setattr(registry_module, "load_definition", lambda name: broken)
    before = sorted(history.iterdir())
    with pytest.raises(IncompatibleSchemaError, match="cannot read records written with v1"):
        registry_module.snapshot()
    assert sorted(history.iterdir()) == before
