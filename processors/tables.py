"""The tables a team already has: a CSV with a header, or JSON lines, as rows of fields."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

JSON_LINES = (".jsonl", ".ndjson", ".json")


def read_table(path: Path, error: type[Exception]) -> list[dict[str, Any]]:
    """Every row of ``path``; ``error`` names a line that is not JSON, or an empty file."""
    rows: list[dict[str, Any]]
    if path.suffix.lower() in JSON_LINES:
        try:
            rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
        except json.JSONDecodeError as exc:
            raise error(f"{path}: line {exc.lineno} is not JSON") from exc
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    if not rows:
        raise error(f"{path}: no rows")
    return rows


def columns(names: str) -> list[str]:
    """``subject,body`` -> ``["subject", "body"]``: one or more columns in one option."""
    return [name.strip() for name in names.split(",") if name.strip()]
