"""The tables a team already has: a CSV with a header, or JSON lines, as rows of fields."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

JSON_LINES = (".jsonl", ".ndjson", ".json")


def read_table(path: Path, error: type[Exception]) -> list[dict[str, Any]]:
    """Every row of ``path``; ``error`` names a line that is not a JSON object, text that
    is not UTF-8, or an empty file. A byte-order mark (Excel's "CSV UTF-8") is read past;
    blank JSON lines are skipped."""
    rows: list[dict[str, Any]] = []
    try:
        if path.suffix.lower() in JSON_LINES:
            # lines end at "\n" only: U+2028 and U+0085 may stand raw inside a JSON string
            with path.open(encoding="utf-8-sig", newline="") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except (json.JSONDecodeError, RecursionError) as exc:
                        raise error(f"{path}: line {number} is not JSON") from exc
                    if not isinstance(row, dict):
                        raise error(f"{path}: line {number} is not a JSON object")
                    rows.append(row)
        else:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                try:
                    rows = list(reader)
                except csv.Error as exc:  # e.g. a field past the csv module's limit
                    raise error(f"{path}: after line {reader.line_num}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text; save it as UTF-8") from exc
    if not rows:
        raise error(f"{path}: no rows")
    return rows


def columns(names: str) -> list[str]:
    """``subject,body`` -> ``["subject", "body"]``: one or more columns in one option."""
    return [name.strip() for name in names.split(",") if name.strip()]
