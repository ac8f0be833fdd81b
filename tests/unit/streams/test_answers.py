"""Replies built on vetted answers, in the email's language, or a person when there is none:
every stage of the pipeline in one process, with the sample company's taxonomy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from streams.stages.inline import Inline
from tests import samples
from topics import catalog
from topics.codec import Codec


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Inline]:
    running = Inline(Settings(data_dir=tmp_path, tracing=False))
    yield running
    await running.close()


async def outcome(pipeline: Inline, n: int, subject: str, body: str) -> tuple[str, dict[str, Any]]:
    email: Any = samples.email(
        n,
        sender="Lena Vogt <lena@kunde.example>",
        subject=subject,
        body_text=body,
        body_html=None,
        attachments=[],
    )
    for output in await pipeline.run(email):
        if output.topic == catalog.RESPONSES:
            return "sent", Codec("Response").decode(output.value)
        if output.topic == catalog.ESCALATIONS:
            return "escalated", Codec("Escalation").decode(output.value)
    raise AssertionError("no outcome")


async def test_a_german_email_is_answered_in_german_from_the_german_answers(
    pipeline: Inline,
) -> None:
    kind, record = await outcome(
        pipeline,
        1,
        "Anmeldung geht nicht",
        "Guten Tag, ich kann mich seit gestern nicht anmelden. Die E-Mail zum Zurücksetzen "
        "des Passworts kommt nicht an. Mein Konto ist jetzt gesperrt. Viele Grüße, Lena Vogt",
    )
    assert kind == "sent", record.get("reason")
    assert record["body"].startswith("Guten Tag Lena Vogt,")
    assert "Link zum Zurücksetzen" in record["body"]
    assert record["body"].endswith("Ihr Mailroom Cloud Support-Team")


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (
            "Problème de facturation",
            "Bonjour, j'ai été débité deux fois pour la même facture ce mois-ci. Pouvez-vous "
            "vérifier mon compte et me rembourser le paiement en double ? Merci beaucoup.",
        ),
        (
            "No puedo entrar",
            "Hola, desde ayer no puedo entrar en mi cuenta y el correo para cambiar la "
            "contraseña no llega nunca. ¿Me pueden ayudar, por favor? Gracias.",
        ),
    ],
)
async def test_an_email_in_a_language_with_no_answers_goes_to_a_person(
    pipeline: Inline, subject: str, body: str
) -> None:
    kind, record = await outcome(pipeline, 2, subject, body)
    assert kind == "escalated"
    assert record["reason"] == "unsupported_language"
    assert record["draft"] is None  # nothing was drafted in a language nobody vetted


async def test_an_email_no_vetted_answer_matches_goes_to_a_person_not_a_boilerplate(
    pipeline: Inline,
) -> None:
    kind, record = await outcome(
        pipeline,
        3,
        "Pizza",
        "Hello, do you deliver pepperoni pizza to our office on Friday evenings? We are twelve.",
    )
    assert kind == "escalated"
    assert record["reason"] in ("no_grounded_answer", "low_confidence")
    assert record["draft"] is None


async def test_a_matching_email_is_answered_with_the_vetted_answer_it_names(
    pipeline: Inline,
) -> None:
    kind, record = await outcome(
        pipeline,
        4,
        "Double charge",
        "Hello, I was charged twice for the same invoice this month; the payment appears two "
        "times on my card. Can you check? Thanks, Lena",
    )
    assert kind == "sent", record.get("reason")
    assert "duplicate payment is refunded" in record["body"]
    generated = [d for d in record["decisions"] if d["stage"] == "generate"]
    assert "answers double-charge" in generated[0]["detail"]
