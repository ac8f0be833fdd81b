"""The cascade: the local models decide which paid calls an email needs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.llmstub import ScriptedServer, completion
from streams.endpoint import Endpoint
from streams.settings import Settings
from streams.stages.inline import Inline
from tests import samples
from topics import catalog
from topics.codec import Codec

SURE = (  # close to the sample's vetted answer about double charges (relevance about 0.63)
    "Charged twice for the same invoice",
    "I was charged twice for the same invoice: the payment was processed twice and appears "
    "two times on my card. Duplicate charge on my credit card statement.",
)
UNSURE = (
    "Several things",
    "My payment failed, the app crashes, and I would love a dark mode. Also please change my "
    "email address.",
)


class Paid:
    """A paid model that answers every stage sensibly and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        system = body["messages"][0]["content"]
        if system.startswith("You sort"):
            self.asked["classify"] += 1
            return completion(json.dumps({"category": "billing", "confidence": 0.9}))
        if system.startswith("You check"):
            self.asked["quality"] += 1
            return completion(json.dumps({"score": 0.95, "failed": [], "feedback": []}))
        self.asked["generate"] += 1
        reply = "Dear Ana,\n\nOur billing team will check the payments.\n\nKind regards,\nSupport"
        return completion(json.dumps({"reply": reply, "sources": ["double-charge"]}))


@pytest.fixture
def paid() -> Iterator[tuple[ScriptedServer, Paid]]:
    script = Paid()
    with ScriptedServer() as server:
        server.script(script)
        yield server, script


async def run(
    server: ScriptedServer, tmp_path: Path, cascade: bool, n: int, mail: tuple[str, str]
) -> dict[str, Any]:
    endpoint = Endpoint(base_url=server.base_url, model="paid", input_usd_per_mtok=1.0)
    settings = Settings(
        data_dir=tmp_path,
        tracing=False,
        endpoints={"paid": endpoint},
        models={s: ("paid", "local") for s in ("classify", "generate", "quality")},
        cascade=cascade,
    )
    pipeline = Inline(settings)
    email: Any = samples.email(
        n, subject=mail[0], body_text=mail[1], body_html=None, attachments=[]
    )
    try:
        written = await pipeline.run(email)
    finally:
        await pipeline.close()
    (last,) = [o for o in written if o.topic in (catalog.RESPONSES, catalog.ESCALATIONS)]
    return Codec("Response" if last.topic == catalog.RESPONSES else "Escalation").decode(last.value)


async def test_a_sure_local_classifier_and_an_exact_vetted_answer_skip_every_paid_call(
    paid: tuple[ScriptedServer, Paid], tmp_path: Path
) -> None:
    server, script = paid
    record = await run(server, tmp_path, True, 1, SURE)
    assert "reason" not in record, record.get("reason")  # sent
    assert script.asked == Counter()
    details = {d["stage"]: d["detail"] for d in record["decisions"]}
    assert "cascade" in details["classify"]
    assert "cascade" in details["generate"]
    assert "cascade" in details["quality"]
    assert "Our billing team will compare the payments" in record["body"]  # the vetted text


async def test_without_the_cascade_every_stage_asks_the_paid_model(
    paid: tuple[ScriptedServer, Paid], tmp_path: Path
) -> None:
    server, script = paid
    await run(server, tmp_path, False, 2, SURE)
    assert script.asked == Counter({"classify": 1, "generate": 1, "quality": 1})


async def test_an_unsure_local_classifier_asks_the_paid_one(
    paid: tuple[ScriptedServer, Paid], tmp_path: Path
) -> None:
    server, script = paid
    await run(server, tmp_path, True, 3, UNSURE)
    assert script.asked["classify"] == 1


class Inventive(Paid):
    """A paid generator that adds what no vetted answer says, or names an answer it was
    not given."""

    def __init__(self, reply: str, sources: list[str]) -> None:
        super().__init__()
        self.reply, self.sources = reply, sources

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][0]["content"].startswith("You write"):
            self.asked["generate"] += 1
            return completion(json.dumps({"reply": self.reply, "sources": self.sources}))
        return super().__call__(body)


@pytest.mark.parametrize(
    ("reply", "sources", "finding"),
    [
        (
            "Dear Ana,\n\nYou get a discount on your next invoice within 3 days.\n\n"
            "Kind regards,\nSupport",
            ["double-charge"],
            "a number neither the email nor the answer states",
        ),
        (
            "Dear Ana,\n\nOur billing team will check the payments.\n\nKind regards,\nSupport",
            ["an-answer-it-was-not-given"],
            "it names no vetted answer it is built on",
        ),
    ],
)
async def test_an_llm_reply_not_grounded_in_the_vetted_answers_goes_to_a_person(
    tmp_path: Path, reply: str, sources: list[str], finding: str
) -> None:
    with ScriptedServer() as server:
        script = Inventive(reply, sources)
        server.script(script)
        record = await run(server, tmp_path, False, 4, SURE)
    assert record["reason"] == "no_grounded_answer"
    assert finding in record["detail"]
    assert script.asked["generate"] == 3  # every revision asked, none accepted
