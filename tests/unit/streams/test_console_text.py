"""What a sender or a team wrote is printed as written: rich reads "[/b]" as markup and
refuses it (a traceback), and "[kb]" as a style (the word vanished)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from streams.commands.consume import pretty
from tests.cli import clean_env, run_cli
from topics import catalog

HOSTILE = "help [/b] now [link=http://evil.example]click[/link] [kb]"


def printed(markup: str) -> str:
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(markup)
    return out.getvalue()


def test_an_escalation_whose_subject_holds_markup_is_printed_as_written() -> None:
    record = {
        "message_id": "<[/i]@example.com>",
        "reason": "policy_category",
        "detail": "Legal",
        "email": {"subject": HOSTILE},
    }
    shown = printed(pretty(catalog.ESCALATIONS, record))
    assert f"escalated <[/i]@example.com>: policy_category (Legal) subject: {HOSTILE}" in shown


def test_a_reply_whose_body_holds_markup_is_printed_as_written() -> None:
    record = {
        "message_id": "<m@example.com>",
        "recipient": "ana@example.com",
        "category": "billing",
        "iteration": 1,
        "quality_score": 0.9,
        "body": HOSTILE,
    }
    assert HOSTILE in printed(pretty(catalog.RESPONSES, record))


def test_an_error_that_quotes_a_teams_file_is_one_line_as_written(tmp_path: Path) -> None:
    """``models train`` on a CSV whose columns hold markup: the error names them."""
    (tmp_path / "t.csv").write_text("[/b],category\nhello,billing\n")
    env = clean_env(MAILROOM_DATA_DIR=str(tmp_path), COLUMNS="300")
    done = run_cli("models", "train", "--data", str(tmp_path / "t.csv"), env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "no column text; columns: [/b], category" in done.stderr
