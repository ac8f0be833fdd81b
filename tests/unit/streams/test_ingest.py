from __future__ import annotations

from pathlib import Path

import pytest

from streams.commands.ingest import IngestError, html_to_text, read_emails
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


BROKEN = {
    "charset": (
        'Content-Type: text/plain; charset="x-unheard-of"\n\nMy invoice is wrong.\n',
        "My invoice is wrong.",
    ),
    "markup": (
        "Content-Type: text/html\n\n<style>p {}</style><p>The export <![ fails <b>every</b>"
        " time &amp; again<br>Ana\n",
        "The export <![ fails every time & again\nAna",
    ),
    "unclosed": (
        "Content-Type: text/html\n\n<div>Login fails</div> since <b class='x' Monday\n",
        "Login fails since <b class='x' Monday",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_body_python_cannot_parse_is_read_not_lost(tmp_path: Path, kind: str) -> None:
    """A charset no codec knows and HTML the standard parser rejects (Python 3.11 raises
    AssertionError on a stray "<![") each made ingest stop with a traceback, and an mbox
    lose every message after the broken one."""
    content, text = BROKEN[kind]
    (tmp_path / "one.eml").write_text(f"From: ana@example.com\nSubject: help\n{content}")
    (mail,) = read_emails(tmp_path / "one.eml")
    assert mail["body_text"] == text
    ENCODER.encode(mail)
    box = "".join(
        f"From ana@example.com Mon Mar  4 09:00:00 2024\nFrom: ana@example.com\n"
        f"Message-ID: <m{i}@example.com>\nSubject: s{i}\n{body}\n"
        for i, body in enumerate(["Content-Type: text/plain\n\nfirst\n", content, "\nlast\n"])
    )
    (tmp_path / "box.mbox").write_text(box)
    mails = list(read_emails(tmp_path / "box.mbox"))
    assert [m["body_text"] for m in mails] == ["first", text, "last"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", ["<a ", "<!--", "<![", "<script", "</", "<a href='"])
def test_broken_markup_of_any_length_is_read_in_time_linear_in_it(unit: str) -> None:
    """Closing the standard parser on 64 KB of an unclosed "<a " took 32 s."""
    markup = unit * (256 * 1024 // len(unit)) + "<p>call me"
    # a comment that never closes hides the rest, as a browser shows it; the HTML is kept
    text = html_to_text(markup)
    assert text == "" if unit == "<!--" else text.endswith("call me")
    assert html_to_text(markup + "-->thanks").endswith("thanks")
