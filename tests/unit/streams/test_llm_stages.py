"""Every model stage on an OpenAI-compatible server (the scripted one, over loopback
sockets): chains, costs from usage, and the breaker routing to ``local`` and back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.engine.records import Output
from streams.errors import EndpointUnavailable
from streams.guard.budget import Budget
from streams.guard.faults import FaultInjector
from streams.guard.gate import ModelGate
from streams.models.local import LocalModels
from streams.settings import MODEL_STAGES, BreakerPolicy, Settings
from streams.stages.calls import ModelCalls
from streams.stages.inline import Inline
from streams.stages.ticket import new_ticket
from tests import samples
from tests.llm_server import ScriptedServer, completion
from tests.taxonomies import sample_without_kb
from topics import catalog
from topics.codec import Codec

REPLY = (
    "Dear Ana,\n\nthank you for writing. We are sorry you were charged twice for "
    "INV-4411; our billing team is checking the duplicate charge now and will write to "
    "you about it.\n\nKind regards,\nThe Support Team"
)


def answers(body: dict[str, Any]) -> dict[str, Any]:
    """A well-behaved model: a valid answer for whichever task the system prompt is."""
    system = body["messages"][0]["content"]
    if system.startswith("You sort"):
        content = {"category": "billing", "confidence": 0.93}
    elif system.startswith("You judge"):
        content = {"level": "medium", "sentiment": -0.3, "reasons": ["charged twice"]}
    elif system.startswith("You list"):
        content = {
            "items": [
                {
                    "kind": "refund",
                    "text": "refund the duplicate charge",
                    "amount": 49.0,
                    "currency": "EUR",
                    "reference": "INV-4411",
                }
            ]
        }
    elif system.startswith("You write"):
        content = {"reply": REPLY}
    else:
        content = {"score": 0.92, "failed": [], "feedback": []}
    return completion(json.dumps(content), 400, 60)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def settings_for(server: ScriptedServer, tmp_path: Path, **extra: Any) -> Settings:
    endpoint = {
        "base_url": server.base_url,
        "model": "scripted-1",
        "input_usd_per_mtok": 1.5,
        "output_usd_per_mtok": 6.0,
        "max_output_tokens": 200,
    }
    return Settings(
        data_dir=tmp_path,
        tracing=False,
        endpoints={"scripted": endpoint},  # type: ignore[dict-item]
        models={stage: ("scripted", "local") for stage in MODEL_STAGES},
        **extra,
    )


async def through_pipeline(settings: Settings, email: dict[str, Any]) -> list[Output]:
    pipeline = Inline(settings)
    try:
        return await pipeline.run(email)
    finally:
        await pipeline.close()


@pytest.mark.parametrize(
    "sender",
    [
        "Ana <ana@example.com>, victim@example.org",  # a reply to two
        "ana@example.com\r\nBcc: victim@example.org",  # a header for whatever sends it
        "Ana",  # no address at all
    ],
)
async def test_a_reply_goes_to_one_sender_or_to_a_person(
    server: ScriptedServer, tmp_path: Path, sender: str
) -> None:
    """Code chooses who a reply goes to: the one address of the email's sender. A sender
    of two addresses or a line break got the reply with it as its recipient."""
    server.script(answers)
    email = samples.email(5, sender=sender, body_html=None, attachments=[])
    settings = settings_for(server, tmp_path, cascade=False, config=sample_without_kb(tmp_path))
    written = await through_pipeline(settings, email)
    assert [o.topic for o in written if o.topic == catalog.RESPONSES] == []
    (escalation,) = [
        Codec("Escalation").decode(o.value) for o in written if o.topic == catalog.ESCALATIONS
    ]
    assert escalation["reason"] == "no_reply_address"


async def test_every_model_stage_answered_by_the_llm_costs_what_its_tokens_cost(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.script(answers)
    email = samples.email(5, sender="Ana <ana@example.com>", body_html=None, attachments=[])
    # Every stage on the LLM: no cascade, and no vetted answers to ground the reply in.
    settings = settings_for(server, tmp_path, cascade=False, config=sample_without_kb(tmp_path))
    written = await through_pipeline(settings, email)
    (reply,) = [o for o in written if o.topic == catalog.RESPONSES]
    response = Codec("Response").decode(reply.value)
    assert response["body"] == REPLY
    assert response["recipient"] == "Ana <ana@example.com>"  # the email's sender, always
    assert len(server.requests) == 5  # one call per model stage
    spends = [json.loads(o.value or b"{}") for o in written if o.topic == catalog.BUDGET_SPEND]
    assert len(spends) == 5
    per_call = (400 * 1.5 + 60 * 6.0) / 1e6
    assert sum(s["cost"] for s in spends) == pytest.approx(5 * per_call)
    assert {(s["endpoint"], s["input_tokens"], s["output_tokens"]) for s in spends} == {
        ("scripted", 400, 60)
    }
    assert response["cost"] == pytest.approx(5 * per_call, abs=1e-6)
    details = " ".join(d["detail"] for d in response["decisions"])
    assert "scripted scripted-1 tokens 400/60" in details
    for request in server.requests:  # the email is data in the user message, never system
        system, user = request["body"]["messages"]
        assert "INV-4411" not in system["content"]
        assert "duplicate charge" not in system["content"]  # nor what models made of it
        assert "<<EMAIL-" in user["content"]


async def test_a_down_endpoint_opens_its_breaker_the_chain_goes_local_and_recovers(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.script(lambda body: (503, {"error": {"message": "overloaded"}}))
    settings = settings_for(server, tmp_path)
    gate = ModelGate(
        budget=Budget(settings),
        faults=FaultInjector({}),
        policy=BreakerPolicy(threshold=2, min_calls=2, cooldown_s=3600),
    )
    calls = ModelCalls(LocalModels(tmp_path), gate, settings)
    ticket = new_ticket(samples.email(6))  # type: ignore[arg-type]

    async def classify() -> Any:
        return await calls.call(
            "classify",
            "tfidf-logreg",
            ticket,
            lambda: "local answer",
            llm=lambda chat: calls.tasks.classify(chat, "s", "my invoice is wrong"),
            began=0.0,
        )

    try:
        for _ in range(2):  # the endpoint fails: retried by the tiers, counted by its breaker
            with pytest.raises(EndpointUnavailable):
                await classify()
        call = await classify()  # breaker open: the chain's next backend answers
        assert call is not None
        assert call.result == "local answer"
        assert ticket["decisions"][-1]["outcome"] == "model_unavailable"
        assert len(server.requests) == 2  # no request while the breaker is open
        gate.breakers["scripted"].opened_at -= 3600  # its cooldown is over
        server.script(answers)
        call = await classify()
        assert call is not None
        assert call.endpoint == "scripted"  # the trial call succeeded: back on the LLM
        assert gate.breakers["scripted"].state.value == "closed"
    finally:
        await calls.backends.close()
