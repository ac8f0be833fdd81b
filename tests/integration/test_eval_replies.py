"""Every reply the eval sends, re-checked here with rules of its own: nothing a customer
reads may state a link, an address, a phone number, an amount, a number or a promise that
neither their email nor the vetted answers the reply names state. And no complaint the
urgency scorer calls critical gets an automatic reply."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.eval import cfpb, tickets
from ops.eval.common import DATA, Outcome
from streams.models.knowledge import build_index
from streams.settings import Settings

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"no shared data at {DATA}")

LINK = re.compile(r"https?://\S+|www\.\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|dev)\b")
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
PROMISE = re.compile(
    r"\b(refund|credit|compensat|reimburs|discount|voucher|waive|guarantee|free of charge)\w*",
    re.I,
)


def statements(reply: str) -> Iterator[tuple[str, str]]:
    for kind, pattern in (("link", LINK), ("address", ADDRESS), ("number", NUMBER)):
        for found in pattern.findall(reply):
            yield kind, found.rstrip(".,;:)")
    for found in PROMISE.finditer(reply):
        yield "promise", found.group(1).lower()


def recheck(outcomes: list[Outcome], settings: Settings) -> tuple[int, list[str]]:
    built = build_index(settings.data_dir, settings.taxonomy)
    company = settings.taxonomy.company
    own = " ".join([*company.allowed(), *company.slots().values()])
    sent, problems = 0, []
    for outcome in outcomes:
        if outcome.kind != "sent":
            continue
        sent += 1
        named = [built.index.get(i) for i in outcome.sources()] if built else []
        assert named, f"{outcome.email['message_id']} names no vetted answer"
        source = " ".join(
            [outcome.email["subject"], outcome.email["body_text"], own]
            + [a.text for a in named if a is not None]
        ).lower()
        numbers = set(NUMBER.findall(source))
        for kind, text in statements(outcome.record["body"]):
            present = text in numbers if kind == "number" else text.lower() in source
            if not present:
                problems.append(f"{outcome.email['message_id']}: {kind} {text!r}")
    return sent, problems


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval")


def test_every_reply_the_tickets_eval_sends_is_grounded(work: Path) -> None:
    run = tickets.run(work)
    sent, problems = recheck(run.outcomes, run.settings)
    assert sent >= 100, "too few replies sent for the check to mean anything"
    assert problems == []


def test_every_cfpb_reply_is_grounded_and_no_critical_complaint_is_answered(work: Path) -> None:
    figures, outcomes = cfpb.run(work)
    settings = Settings(
        data_dir=work,
        tracing=False,
        config=work / "cfpb.toml",
        classifier=(work / "models" / "LATEST").read_text().strip(),
    )
    sent, problems = recheck(outcomes, settings)
    assert sent >= 30
    assert problems == []
    critical = [o for o in outcomes if o.urgency == "critical"]
    assert critical, "the complaints hold critical ones (legal threats, fraud)"
    assert all(o.kind == "escalated" for o in critical)
    assert figures["cfpb critical complaints escalated"] == len(critical)
