from __future__ import annotations

from pathlib import Path

import pytest

from streams.commands.ingest import IngestError, read_emails
from topics.codec import Codec

MAIL = Path(__file__).resolve().parents[2] / "fixtures" / "mail"
ENCODER = Codec("FeedbackEmail")


def test_multipart_eml_with_html_and_attachment() -> None:
    (mail,) = read_emails(MAIL / "multipart_html_attachment.eml")
    assert mail["message_id"] == "<CAF-7781.ana@example.com>"
    assert mail["subject"] == "Charged twice \N{EN DASH} invoice INV-2291"
    assert "charged twice for invoice INV-2291 (49,00 €). Please refund" in mail["body_text"]
    assert "<b>twice</b>" in mail["body_html"]
    assert mail["attachments"] == [
        {"filename": "statement.pdf", "content_type": "application/pdf", "size_bytes": 55}
    ]
    assert mail["received_at"] == 1_709_626_440_000
    assert mail["source"] == "eml"
    ENCODER.encode(mail)  # the shape the pipeline takes


def test_html_only_eml_becomes_text_without_styles() -> None:
    (mail,) = read_emails(MAIL / "html_only.eml")
    assert mail["body_text"] == "The desktop client crashes\non every export."


def test_mbox_with_several_messages() -> None:
    mails = list(read_emails(MAIL / "inbox.mbox"))
    assert [m["message_id"] for m in mails] == [
        "<mbox-1@example.com>",
        "<mbox-2@example.com>",
        "<mbox-3@example.com>",
    ]
    assert mails[1]["headers"]["Auto-Submitted"] == "auto-replied"
    assert "spam folder is empty" in mails[0]["body_text"]
    for mail in mails:
        ENCODER.encode(mail)


def test_csv_with_subject_and_body_columns() -> None:
    mails = list(read_emails(MAIL / "tickets.csv"))
    assert [m["subject"] for m in mails] == ["Refund please", "Crash"]
    assert mails[0]["body_text"] == "I was charged $49.00 twice, please refund."
    assert mails[0]["message_id"].endswith("@mailroom.generated>")
    for mail in mails:
        ENCODER.encode(mail)


def test_json_lines_accept_body_or_body_text() -> None:
    mails = list(read_emails(MAIL / "emails.jsonl"))
    assert [m["body_text"] for m in mails] == [
        "Do you have an office in Lisbon?",
        "Please close my account.",
    ]
    assert mails[1]["message_id"] == "<j2@example.com>"
    for mail in mails:
        ENCODER.encode(mail)


def test_a_folder_reads_every_known_file() -> None:
    assert len(list(read_emails(MAIL))) == 1 + 1 + 3 + 2 + 2


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("bad.jsonl", '{"body": "ok"}\n{not json\n', "bad.jsonl:2: not JSON"),
        ("list.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("nobody.csv", "subject,text\na,b\n", "needs a 'body' column"),
        ("notes.txt", "hello", "unknown format"),
    ],
)
def test_unreadable_files_say_where(tmp_path: Path, name: str, content: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(IngestError, match=says):
        list(read_emails(path))
