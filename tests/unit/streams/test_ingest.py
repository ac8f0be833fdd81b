from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.commands.ingest import IngestError, read_emails
from streams.commands.mail import html_to_text
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
        ("bad.jsonl", '{"body": "ok"}\n{not json\n', "bad.jsonl: line 2 is not JSON"),
        ("list.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
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


#: header values the standard library's structured-header parser raises on (IndexError,
#: AttributeError, TypeError, UnboundLocalError), found by fuzzing
BROKEN_HEADERS = [
    'From: "',
    "Message-ID: <<<>>>",
    'To: a:b@;?\\ba"',
    "Reply-To: )\t, .\\(]",
    "From: a\x00?==?x-bad?b??=\t=?x-bad?b?@[",
    "Content-Type: ?''\\filename=,;.*",
]


def _mbox(*emails: dict[str, str]) -> str:
    """An mbox of emails, each given by its headers and ``body``."""
    return "".join(
        "From ana@example.com Mon Mar  4 09:00:00 2024\n"
        + "".join(f"{k}: {v}\n" for k, v in mail.items() if k != "body")
        + f"\n{mail['body']}\n\n"
        for mail in emails
    )


@pytest.mark.parametrize("header", BROKEN_HEADERS)
def test_a_header_the_parser_cannot_read_keeps_the_email_and_its_mailbox(
    tmp_path: Path, header: str
) -> None:
    name, value = header.split(": ", 1)
    emails = [
        {"From": "ana@example.com", "Message-ID": f"<m{i}@example.com>", "body": f"order {i}"}
        for i in range(3)
    ]
    emails[1][name] = value
    (tmp_path / "box.mbox").write_text(_mbox(*emails))
    mails = list(read_emails(tmp_path / "box.mbox"))
    assert [m["body_text"] for m in mails] == ["order 0", "order 1", "order 2"]
    assert mails[0]["sender"] == "ana@example.com"
    fields = {"From": "sender", "Message-ID": "message_id", "To": "recipient"}
    read = mails[1][fields[name]] if name in fields else mails[1]["headers"][name]
    assert read == value  # kept as written: a person can still see who wrote
    for mail in mails:
        ENCODER.encode(mail)


@pytest.mark.timeout(30)
def test_a_header_of_any_length_is_read_in_time(tmp_path: Path) -> None:
    """A Subject of 40,000 encoded-words (546 KB) took 26 s in the standard parser."""
    subject = "=?utf-8?q?caf=C3=A9?= " * 40_000
    (tmp_path / "big.eml").write_text(f"From: ana@example.com\nSubject: {subject}\n\nhi\n")
    (mail,) = read_emails(tmp_path / "big.eml")
    assert mail["subject"].startswith("café")
    assert mail["body_text"] == "hi"


def test_rows_of_a_table_are_read_as_the_tools_that_write_them_do(tmp_path: Path) -> None:
    """Found by fuzzing: a JSON message id that is a number raised AttributeError; a
    received_at in a CSV failed even as epoch ms; blank message ids all became "", one key
    for every blank row; a lone surrogate raised UnicodeEncodeError; a byte-order mark
    hid the first column."""
    rows = [
        {"message_id": 4711, "body": "one", "received_at": "1709626440000"},
        {"message_id": "  ", "body": "two", "received_at": "2024-03-05T08:14:00Z"},
        {"message_id": "", "body": "three", "received_at": "Tue, 05 Mar 2024 08:14:00 +0000"},
        {"body": "a lone \ud800 surrogate", "subject": 12},
    ]
    (tmp_path / "mails.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mails = list(read_emails(tmp_path / "mails.jsonl"))
    assert mails[0]["message_id"] == "4711"
    assert [m["received_at"] for m in mails[:3]] == [1_709_626_440_000] * 3
    ids = [m["message_id"] for m in mails]
    assert len(set(ids)) == 4
    assert all(ids)
    assert mails[3]["body_text"] == "a lone \ufffd surrogate"
    assert mails[3]["subject"] == "12"
    for mail in mails:
        ENCODER.encode(mail)
    (tmp_path / "mails.csv").write_bytes(
        "subject,body,received_at\r\nRefund,charged twice,1709626440000\r\n".encode("utf-8-sig")
    )
    (mail,) = read_emails(tmp_path / "mails.csv")
    assert (mail["subject"], mail["received_at"]) == ("Refund", 1_709_626_440_000)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"body": "ok"}\n{"body": {"html": "x"}}\n', "line 2: body_text: Input should be"),
        ('{"body": "ok", "received_at": "next week"}\n', "line 1: received_at: .*not a date"),
        ('{"body": "ok", "headers": ["a"]}\n', "line 1: headers: "),
        ('{"body": "ok", "attachments": [{"size_bytes": -1}]}\n', "line 1: attachments.0"),
    ],
)
def test_a_row_not_of_the_email_shape_is_named_by_its_line(
    tmp_path: Path, content: str, says: str
) -> None:
    (tmp_path / "mails.jsonl").write_text(content)
    with pytest.raises(IngestError, match=says):
        list(read_emails(tmp_path / "mails.jsonl"))


def test_a_json_file_of_one_array_or_object_is_read(tmp_path: Path) -> None:
    (tmp_path / "many.json").write_text(json.dumps([{"body": "a"}, {"body": "b"}], indent=2))
    (tmp_path / "one.json").write_text(json.dumps({"body": "c"}, indent=2))
    assert [m["body_text"] for m in read_emails(tmp_path)] == ["a", "b", "c"]


def test_a_folder_that_links_to_itself_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "mails.jsonl").write_text('{"body": "once"}\n')
    (tmp_path / "loop.csv").symlink_to(tmp_path, target_is_directory=True)
    assert [m["body_text"] for m in read_emails(tmp_path)] == ["once"]
