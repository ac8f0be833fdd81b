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
        # read leniently, the quote that never closes swallowed both later rows into one field
        (
            b'text,category\nok,a\n"refund,billing\nlogin,account\nbye,x\n',
            "line 3: .* never closes",
        ),
        (b'text,category\nok,a\n"ok"x,b\n', "line 3: ',' expected"),
    ],
)
def test_a_csv_that_cannot_be_read_says_why(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "tickets.csv"
    path.write_bytes(content)
    with pytest.raises(TableError, match=message) as caught:
        read_table(path, TableError)
    assert str(path) in str(caught.value)


def test_a_field_past_the_csv_modules_limit_is_read(tmp_path: Path) -> None:
    """The csv module stops at 128 KiB a field; an agent's answer or a body may be longer."""
    before = csv.field_size_limit(131_072)  # its default (another test may have raised it)
    try:
        path = tmp_path / "tickets.csv"
        path.write_text(f'text,category\nok,a\n"{"x" * 140_000}",b\n', encoding="utf-8")
        assert [len(r["text"]) for r in read_table(path, TableError)] == [2, 140_000]
    finally:
        csv.field_size_limit(before)


def test_ragged_rows_keep_the_headers_columns(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text("text,category\nonly text\nhello,billing,extra\n", encoding="utf-8")
    assert read_table(path, TableError) == [
        {"text": "only text", "category": ""},
        {"text": "hello", "category": "billing"},
    ]
