from __future__ import annotations

import pytest

from processors.models import Email
from processors.prefilter import prefilter, strip_quotes


def mail(
    subject: str = "Question",
    body: str = "My invoice looks wrong, please check.",
    sender: str = "ana@example.com",
    **headers: str,
) -> Email:
    return Email(
        "<m@x>", sender, subject, body, {k.replace("_", "-"): v for k, v in headers.items()}
    )


@pytest.mark.parametrize(
    ("email", "accepted", "reason"),
    [
        (mail(), True, "accepted"),
        (mail(Auto_Submitted="auto-replied"), False, "auto_reply"),
        (
            mail("Out of Office: back Monday", "I am away.", Auto_Submitted="auto-replied"),
            False,
            "out_of_office",
        ),
        (mail("Automatic reply: your ticket"), False, "out_of_office"),
        (mail(Auto_Submitted="no"), True, "accepted"),
        (
            mail("Undelivered Mail Returned to Sender", sender="MAILER-DAEMON@mx.example.com"),
            False,
            "bounce",
        ),
        (mail("Delivery Status Notification (Failure)"), False, "bounce"),
        (mail(List_Unsubscribe="<mailto:unsub@news.example.com>"), False, "newsletter"),
        (mail(Precedence="bulk"), False, "newsletter"),
        (mail("Our weekly digest"), False, "newsletter"),
        (
            mail("Congratulations", "You have won! Click here to claim your prize today."),
            False,
            "spam_like",
        ),
        (
            mail("Act now", "Dear winner, act now to collect your reward. 100% guaranteed."),
            False,
            "spam_like",
        ),
        (
            mail("Re: ticket", "> old text\n> more old text\nOn Mon, Bo <b@x> wrote:\nhello"),
            False,
            "empty_after_quote_stripping",
        ),
        (mail("Re: ticket", "   \n\n"), False, "empty_after_quote_stripping"),
        (
            mail("I won the lottery of bad luck", "Your app crashed and I lost my work."),
            True,
            "accepted",
        ),
    ],
)
def test_prefilter_decisions(email: Email, accepted: bool, reason: str) -> None:
    result = prefilter(email)
    assert (result.accepted, result.reason) == (accepted, reason)


def test_quoted_history_and_signature_are_stripped() -> None:
    body = (
        "Still broken, see below.\n\n-- \nAna\nSent from my phone\n"
        "On Tue, 2 Jan 2024, Support <s@x> wrote:\n> Did you try restarting?"
    )
    assert strip_quotes(body) == "Still broken, see below."
