"""``mailroom trace`` shows what the span files hold, however a worker left them."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from streams.commands.traceview import load_spans, render
from streams.errors import TraceError


def span(span_id: str, parent: str | None, start: int, **attributes: Any) -> dict[str, Any]:
    return {
        "trace_id": "t" * 32,
        "span_id": span_id,
        "parent_id": parent,
        "name": f"span {span_id}",
        "kind": "INTERNAL",
        "start": start,
        "end": start + 2_000_000,
        "status": "OK",
        "error": None,
        "attributes": {"mailroom.message_id": "<m@example.com>", **attributes},
    }


def test_damaged_lines_of_a_killed_worker_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated last line raised JSONDecodeError; a line without trace_id, KeyError."""
    traces = tmp_path / "traces"
    traces.mkdir()
    good = [json.dumps(span("a", None, 1)), json.dumps(span("b", "a", 2))]
    damaged = ['{"trace_id": "tt", "span', '{"name": "no ids"}', "[1, 2]"]
    (traces / "spans-1.jsonl").write_text("\n".join(good + damaged) + "\n")
    (traces / "old.jsonl").mkdir()  # a folder of that name is not a file of spans
    spans = load_spans(tmp_path, "<m@example.com>")
    assert [s["span_id"] for s in spans] == ["a", "b"]
    assert "3 lines that are not spans skipped" in caplog.text
    assert render(spans, jaeger_ui="http://j").splitlines()[:2] == [
        "span a  2.0 ms",
        "  span b  2.0 ms",
    ]


def test_a_chain_of_thousands_of_spans_and_a_cycle_of_parents_are_printed() -> None:
    chain = [span("0", None, 0)] + [span(str(n), str(n - 1), n) for n in range(1, 3000)]
    cycle = [span("x", "y", 5000), span("y", "x", 5001)]
    lines = render(chain + cycle, jaeger_ui="http://j").splitlines()
    assert len(lines) == 3000 + 2 + 1  # every span once, and the trace's link
    assert lines[2999] == "  " * 2999 + "span 2999  2.0 ms"


def test_an_error_that_quotes_markup_is_shown_as_written() -> None:
    """An error's text may quote an email: "[/b]" was read as rich markup."""
    failed = span("a", None, 1)
    failed.update(status="ERROR", error="cannot handle b'[/b] and [red]'")
    assert "cannot handle b'\\[/b] and \\[red]'" in render([failed], jaeger_ui="http://j")


def test_a_jaeger_that_does_not_answer_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(TraceError, match=f"Jaeger at http://127.0.0.1:{port} cannot be reached"):
        load_spans(tmp_path, "t" * 32, jaeger=f"http://127.0.0.1:{port}")
    with pytest.raises(TraceError, match="Jaeger at notaurl"):
        load_spans(tmp_path, "t" * 32, jaeger="notaurl")
