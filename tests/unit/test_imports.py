"""Imports point one way: processors/ and topics/ never import the runtime or its clients,
and inside streams/ every room imports only the rooms below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"faust", "mode", "aiokafka", "confluent_kafka", "opentelemetry", "streams", "ops"}

#: streams/ from the top down; a module may import its own room and the rooms after it.
LAYERS = (
    ("cli",),
    ("worker", "commands"),
    ("stages",),
    ("models",),
    ("guard",),
    ("engine",),
    ("settings", "taxonomy", "endpoint"),  # settings carry telemetry's librdkafka logger
    ("telemetry",),
    ("errors",),
)


def imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``a.b.c`` for ``from a.b import c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_modules(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imports(path)}


@pytest.mark.parametrize("package", ["processors", "topics"])
def test_pure_packages_import_no_runtime(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_modules(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def room_of(module: str) -> str | None:
    """``streams.engine.runner`` -> ``engine``; None outside streams/."""
    parts = module.split(".")
    return parts[1] if parts[0] == "streams" and len(parts) > 1 else None


def level(room: str) -> int:
    for n, rooms in enumerate(LAYERS):
        if room in rooms:
            return n
    raise AssertionError(f"streams/{room} is in no layer of LAYERS: add it")


def test_streams_rooms_import_only_downwards() -> None:
    upward = []
    for path in sorted((ROOT / "streams").rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        here = room_of(".".join(relative.parts))
        if here is None or here == "__init__":
            continue
        for name in imports(path):
            there = room_of(name)
            if there is not None and level(there) < level(here):
                upward.append(f"{relative} imports {name}")
    assert upward == []


def test_the_checkers_see_forbidden_and_upward_imports(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "import aiokafka.producer\nfrom confluent_kafka import Producer\n"
        "from streams.stages import registry\n"
    )
    assert imported_modules(sample) >= {"aiokafka", "confluent_kafka"}
    assert level(room_of("streams.stages.registry") or "") < level("engine")


def test_no_streams_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "streams").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
