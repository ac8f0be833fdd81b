"""The Avro schemas of the contract: current versions and their history, by fingerprint.

``schemas/<namespace>.<Name>.avsc`` holds the current version of each named type (other
files are referenced by full name and inlined on load). ``schemas/history/<Name>.v<N>.avsc``
holds every version that was ever released, fully expanded, so that records written by an
older producer are still read (resolved against the current schema) and a test can check
that each change stays backward compatible.

The fingerprint is CRC-64-AVRO of the Parsing Canonical Form, as the Avro single-object
encoding and the Java implementation define it (fastavro computes the spec form; the
``avro`` package keeps logical types in its canonical form and would disagree).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema
from fastavro.schema import expand_schema, fingerprint, load_schema, to_parsing_canonical_form

from topics.errors import IncompatibleSchemaError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
HISTORY_DIR = SCHEMA_DIR / "history"
NAMESPACE = "mailroom"

#: The records that travel as top-level values on topics.
TOP_LEVEL = ("FeedbackEmail", "Ticket", "Response", "Escalation")

_HISTORY_FILE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema."""

    name: str
    version: int
    definition: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False, compare=False)
    canonical: str = field(repr=False)
    fingerprint: bytes

    @classmethod
    def from_definition(cls, name: str, version: int, definition: dict[str, Any]) -> SchemaVersion:
        canonical = to_parsing_canonical_form(definition)
        return cls(
            name=name,
            version=version,
            definition=definition,
            parsed=parse_schema(
                _plain_types(definition)
            ),  # parsed once: fastavro skips it per call
            canonical=canonical,
            fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        )


def _plain_types(node: Any) -> Any:
    """A copy without ``logicalType``: Python code sees epoch millis as ints, not datetimes.

    Logical types are not part of the Parsing Canonical Form, so the fingerprint and the
    bytes on the wire are the same; Java or Go readers still see ``timestamp-millis``.
    """
    if isinstance(node, dict):
        return {k: _plain_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_plain_types(item) for item in node]
    return node


def load_definition(name: str) -> dict[str, Any]:
    """The current, fully expanded JSON definition of ``name`` (e.g. ``"Ticket"``)."""
    path = SCHEMA_DIR / f"{NAMESPACE}.{name}.avsc"
    return cast(dict[str, Any], expand_schema(load_schema(str(path), _write_hint=False)))


@dataclass(frozen=True)
class Registry:
    """Every known version of every top-level schema."""

    current: dict[str, SchemaVersion]
    history: dict[str, tuple[SchemaVersion, ...]]
    by_fingerprint: dict[bytes, SchemaVersion]

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        return self.history.get(name, ())


def history_files() -> dict[str, list[tuple[int, Path]]]:
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(HISTORY_DIR.glob("*.avsc")):
        match = _HISTORY_FILE.match(path.name)
        if match is None:
            raise ValueError(f"schema history file {path.name} is not named <Name>.v<N>.avsc")
        found.setdefault(match["name"], []).append((int(match["version"]), path))
    return {name: sorted(items) for name, items in found.items()}


@cache
def registry() -> Registry:
    """Load the schema directory once per process."""
    current = {
        name: SchemaVersion.from_definition(name, 0, load_definition(name)) for name in TOP_LEVEL
    }
    history: dict[str, tuple[SchemaVersion, ...]] = {}
    for name, items in history_files().items():
        history[name] = tuple(
            SchemaVersion.from_definition(name, version, json.loads(path.read_text()))
            for version, path in items
        )
    by_fingerprint: dict[bytes, SchemaVersion] = {}
    for name in TOP_LEVEL:
        for version in history.get(name, ()):
            by_fingerprint[version.fingerprint] = version
        by_fingerprint[current[name].fingerprint] = current[name]
    return Registry(current=current, history=history, by_fingerprint=by_fingerprint)


def compatible(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    """Can a consumer with schema ``reader`` read what ``writer`` wrote? The ``avro``
    package's checker is the authority (Avro's schema resolution rules)."""
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    return bool(result.compatibility is SchemaCompatibilityType.compatible)


def snapshot() -> list[Path]:
    """Write ``history/<Name>.v<N+1>.avsc`` for every schema whose current version is new,
    refusing (``IncompatibleSchemaError``) one that cannot read an earlier version.

    Run ``python -m topics.registry`` after changing a schema; the test suite checks the
    recorded history again.
    """
    written = []
    files = history_files()
    for name in TOP_LEVEL:
        definition = load_definition(name)
        current = to_parsing_canonical_form(definition)
        versions = files.get(name, [])
        if versions:
            latest = json.loads(versions[-1][1].read_text())
            if to_parsing_canonical_form(latest) == current:
                continue
        for version, path in versions:
            if not compatible(definition, json.loads(path.read_text())):
                raise IncompatibleSchemaError(name, version)
        path = HISTORY_DIR / f"{name}.v{(versions[-1][0] if versions else 0) + 1}.avsc"
        path.write_text(json.dumps(definition, indent=1) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in snapshot():
        print(f"wrote {written_path}")
