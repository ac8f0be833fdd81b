"""A team's own table (CSV or JSON lines) is read as saved by the tools teams use, and a
file that cannot be read says which file and line, never a traceback."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from processors.tables import read_table


class TableError(Exception):
    pass


def test_a_csv_saved_by_excel_with_a_byte_order_mark_keeps_its_first_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tickets.csv"
    path.write_bytes("text,category\r\nmy card was charged twice,billing\r\n".encode("utf-8-sig"))
    assert read_table(path, TableError) == [
        {"text": "my card was charged twice", "category": "billing"}
    ]


def test_json_lines_with_separators_inside_strings_and_blank_lines_are_read(
    tmp_path: Path,
) -> None:
    rows = [
        {"text": "refund\u2028please", "category": "billing"},
        {"text": "a\x85b", "category": "x"},
    ]
    path = tmp_path / "tickets.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text(lines[0] + "\n   \n\n" + lines[1] + "\n", encoding="utf-8")
    assert read_table(path, TableError) == rows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "a"}\n{"text": "b"}\n\n{"text": \n', "line 4 is not JSON"),
        (b'{"text": "a"}\n[1, 2]\n', "line 2 is not a JSON object"),
        (b'{"text": "a"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 2 is not JSON"),
        (b'{"text": "caf\xe9"}\n', "not UTF-8"),
    ],
)
def test_a_bad_json_line_is_named_by_its_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(content)
    with pytest.raises(TableError, match=message) as caught:
        read_table(path, TableError)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"text,category\ncaf\xe9,billing\n", "not UTF-8"),
        (b'text,category\nok,a\n"' + b"x" * 140_000 + b'",b\n', "after line 2: field larger"),
    ],
)
def test_a_csv_that_cannot_be_read_says_why(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "tickets.csv"
    path.write_bytes(content)
    before = csv.field_size_limit(131_072)  # the csv module's default (a test may raise it)
    try:
        with pytest.raises(TableError, match=message) as caught:
            read_table(path, TableError)
    finally:
        csv.field_size_limit(before)
    assert str(path) in str(caught.value)
