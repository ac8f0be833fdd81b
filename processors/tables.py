"""The tables a team already has: a CSV with a header, or JSON lines, as rows of fields.

Both readers yield ``(line, row)``: the line a row ends on, for an error that names it.
Every way a file cannot be read raises the caller's ``error`` naming the file, and the
line where there is one: never a traceback, never a row silently lost.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JSON_LINES = (".jsonl", ".ndjson", ".json")

#: the longest CSV field read (the csv module stops at 128 KiB): an email body or an
#: agent's answer may be longer, and what is too long for the pipeline is its decision
FIELD_LIMIT = 64 * 1024 * 1024


def json_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every JSON object of a JSON-lines file; blank lines are skipped. A ``.json`` file
    that is one JSON document, an object or an array of objects, is read as that."""
    if path.suffix.lower() == ".json" and (document := _document(path, error)) is not None:
        items = document if isinstance(document, list) else [document]
        for number, row in enumerate(items, start=1):
            if not isinstance(row, dict):
                raise error(f"{path}: item {number} is not a JSON object")
            yield number, row
        return
    # newline="": lines end at "\n", "\r\n" or "\r" only (JSON holds no raw CR or LF in a
    # string), not at a raw U+2028 or U+0085, which JSON allows inside a string
    with _opened(path, error) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise error(f"{path}: line {number} is not JSON") from exc
            if not isinstance(row, dict):
                raise error(f"{path}: line {number} is not a JSON object")
            yield number, row


def csv_rows(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, str]]]:
    """Every row of a CSV with a header, keyed by the header's names. Fields past the
    header's are left out; a missing field is ``""``. A quote that never closes is an
    error: read leniently, it swallows every later row into one field."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    with _opened(path, error) as handle:
        reader = csv.DictReader(handle, restval="", strict=True)
        try:
            if reader.fieldnames:  # "text, category" names "category", not " category"
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
            for row in reader:
                row.pop(None, None)  # fields past the header
                yield reader.line_num, row
        except csv.Error as exc:  # the row that begins after the last one read
            hint = "; a quote opened there never closes" if "end of data" in str(exc) else ""
            raise error(f"{path}: line {reader.line_num + 1}: {exc}{hint}") from exc


def rows(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a CSV or, by its extension, a JSON-lines file."""
    reader = json_objects if path.suffix.lower() in JSON_LINES else csv_rows
    try:
        yield from reader(path, error)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text; save it as UTF-8") from exc


def read_table(path: Path, error: type[Exception]) -> list[dict[str, Any]]:
    """Every row of ``path`` (see ``rows``); an empty file is an error."""
    table = [row for _, row in rows(path, error)]
    if not table:
        raise error(f"{path}: no rows")
    return table


def present(table: list[dict[str, Any]]) -> set[str]:
    """The columns of a table: JSON lines may name different fields on each line."""
    return {name for row in table for name in row}


def field_text(value: Any) -> str:
    """A field as text: JSON lines may hold a number, or nothing, where a CSV holds text."""
    return "" if value is None else str(value).strip()


def columns(names: str) -> list[str]:
    """``subject,body`` -> ``["subject", "body"]``: one or more columns in one option."""
    return [name.strip() for name in names.split(",") if name.strip()]


def _document(path: Path, error: type[Exception]) -> Any:
    """The one JSON document of a file, or None if it is not one (JSON lines, say)."""
    with _opened(path, error) as handle:
        try:
            return json.load(handle)
        except (json.JSONDecodeError, RecursionError):
            return None


def _opened(path: Path, error: type[Exception]) -> Any:
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") would hide the first column
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except OSError as exc:  # unreadable, a folder, a symlink loop
        raise error(f"{path}: cannot be read: {exc.strerror or exc}") from exc
