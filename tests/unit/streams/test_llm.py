"""The OpenAI-compatible backend at its transport seam (httpx2, which openai 3.x uses and
respx cannot patch), and once over real loopback sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel, Field

from streams.endpoint import Endpoint
from streams.engine.records import Incoming
from streams.engine.retry import route_failure
from streams.errors import BackendFailed, EndpointUnavailable
from streams.models.llm import ChatBackend
from streams.settings import Settings
from tests.llm_server import ScriptedServer, completion
from topics import catalog
from topics import headers as h


class Urgency(BaseModel):
    level: int = Field(ge=1, le=5)
    reasons: list[str]


ENDPOINT = Endpoint(
    base_url="http://llm.test/v1",
    model="small-1",
    input_usd_per_mtok=2.0,
    output_usd_per_mtok=8.0,
    max_output_tokens=64,
)
ASK = [{"role": "system", "content": "Rate urgency."}, {"role": "user", "content": "help"}]


def backend(
    replies: list[httpx2.Response | Exception], endpoint: Endpoint = ENDPOINT
) -> tuple[ChatBackend, list[dict[str, Any]]]:
    """A backend whose transport answers ``replies`` in order; the request bodies it got."""
    seen: list[dict[str, Any]] = []
    todo = iter(replies)

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        reply = next(todo)
        if isinstance(reply, Exception):
            raise reply
        return reply

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    return ChatBackend("test", endpoint, http_client=client), seen


def ok(content: str, tokens: tuple[int, int] = (100, 20)) -> httpx2.Response:
    return httpx2.Response(200, json=completion(content, *tokens))


async def test_a_valid_answer_comes_back_validated_with_its_cost() -> None:
    chat, seen = backend([ok('{"level": 4, "reasons": ["outage"]}')])
    done = await chat.structured(Urgency, ASK, temperature=0.2)
    assert done.value == Urgency(level=4, reasons=["outage"])
    assert (done.input_tokens, done.output_tokens, done.calls) == (100, 20, 1)
    assert done.cost_usd == pytest.approx((100 * 2.0 + 20 * 8.0) / 1e6)
    (body,) = seen
    assert body["model"] == "small-1"
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["level"]["maximum"] == 5
    assert "tools" not in body  # the model gets no tools


async def test_llama_cpp_style_servers_get_json_object_with_the_schema() -> None:
    llama = ENDPOINT.model_copy(update={"structured": "json_object"})
    chat, seen = backend([ok('{"level": 2, "reasons": []}')], llama)
    await chat.structured(Urgency, ASK, temperature=0.0)
    assert seen[0]["response_format"]["type"] == "json_object"
    assert seen[0]["response_format"]["schema"]["required"] == ["level", "reasons"]


@pytest.mark.parametrize(
    "bad",
    [
        '{"level": 4111, "reasons": []}',  # out of range: a grammar may ignore bounds
        '{"level": 3, "reasons": ',  # not JSON at all
        '{"urgency": "high"}',  # the wrong shape
    ],
)
async def test_an_answer_outside_the_schema_gets_one_repair(bad: str) -> None:
    chat, seen = backend([ok(bad, (50, 10)), ok('{"level": 3, "reasons": ["late"]}', (80, 12))])
    done = await chat.structured(Urgency, ASK, temperature=0.2)
    assert done.value.level == 3
    assert (done.calls, done.input_tokens, done.output_tokens) == (2, 130, 22)  # both paid
    repair = seen[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": bad}
    assert "does not match the JSON schema" in repair[-1]["content"]


async def test_twice_outside_the_schema_is_this_backend_s_failure() -> None:
    chat, _ = backend([ok('{"level": 9, "reasons": []}'), ok('{"level": 0, "reasons": []}')])
    with pytest.raises(BackendFailed, match="outside the schema twice") as caught:
        await chat.structured(Urgency, ASK, temperature=0.2)
    assert caught.value.reason == "invalid_model_output"
    assert not caught.value.retriable


async def test_503_is_retried_and_the_next_try_succeeds() -> None:
    chat, seen = backend(
        [
            httpx2.Response(503, json={"error": {"message": "busy"}}),
            ok('{"level": 1, "reasons": []}'),
        ]
    )
    with pytest.raises(EndpointUnavailable, match="HTTP 503") as caught:
        await chat.structured(Urgency, ASK, temperature=0.2)
    assert caught.value.retriable
    assert len(seen) == 1  # the SDK does not retry on its own
    assert (await chat.structured(Urgency, ASK, temperature=0.2)).value.level == 1


async def test_429_retry_after_sets_the_retry_s_not_before() -> None:
    chat, _ = backend([httpx2.Response(429, headers={"Retry-After": "7"}, json={})])
    with pytest.raises(EndpointUnavailable) as caught:
        await chat.structured(Urgency, ASK, temperature=0.2)
    assert caught.value.retry_after_s == 7.0
    record = Incoming(catalog.EXTRACTED, 0, 5, b"k", b"v", [], 0)
    before = int(time.time() * 1000)
    failure = route_failure(catalog.stage("generate"), record, caught.value, (1.0, 10.0))
    assert failure.topic == "generate.retry.1"
    assert int(h.get(failure.headers, h.RETRY_NOT_BEFORE) or 0) >= before + 7000


@pytest.mark.parametrize(
    "reply",
    [
        httpx2.ReadTimeout("slow"),
        httpx2.ConnectError("refused"),
        httpx2.Response(200, text="<html>gateway</html>", headers={"content-type": "text/html"}),
        httpx2.Response(200, text="{not json", headers={"content-type": "application/json"}),
        httpx2.Response(502, text="bad gateway"),
    ],
)
async def test_timeouts_connection_errors_and_broken_bodies_are_retried(
    reply: httpx2.Response | Exception,
) -> None:
    chat, _ = backend([reply])
    with pytest.raises(EndpointUnavailable):
        await chat.structured(Urgency, ASK, temperature=0.2)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_refused_requests_are_this_backend_s_failure_not_a_retry(status: int) -> None:
    chat, seen = backend([httpx2.Response(status, json={"error": {"message": "no"}})])
    with pytest.raises(BackendFailed, match=f"HTTP {status}") as caught:
        await chat.structured(Urgency, ASK, temperature=0.2)
    assert caught.value.reason == "model_unavailable"
    assert len(seen) == 1


def test_keys_come_from_their_variable_and_never_show_in_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-very-secret")
    monkeypatch.setenv(
        "MAILROOM_ENDPOINTS",
        json.dumps(
            {
                "gpt": {
                    "base_url": "https://llm.example/v1",
                    "model": "m",
                    "api_key_env": "TEST_LLM_KEY",
                }
            }
        ),
    )
    monkeypatch.setenv("MAILROOM_MODELS", '{"generate": ["gpt", "local"]}')
    settings = Settings()
    assert settings.chain("generate") == ("gpt", "local")
    assert settings.chain("classify") == ("local",)
    assert settings.endpoints["gpt"].api_key() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in settings.model_dump_json()


def test_a_chain_naming_an_unknown_endpoint_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILROOM_MODELS", '{"generate": ["gpt"]}')
    with pytest.raises(ValueError, match="names \\['gpt'\\], which MAILROOM_ENDPOINTS"):
        Settings()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


async def test_over_real_sockets_against_a_scripted_server(server: ScriptedServer) -> None:
    server.script(lambda body: completion('{"level": 5, "reasons": ["legal threat"]}', 321, 17))
    endpoint = ENDPOINT.model_copy(update={"base_url": server.base_url})
    chat = ChatBackend("local-server", endpoint)
    try:
        done = await chat.structured(Urgency, ASK, temperature=0.4)
    finally:
        await chat.close()
    assert done.value.level == 5
    assert (done.input_tokens, done.output_tokens) == (321, 17)
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["body"]["temperature"] == 0.4


async def test_a_revision_gets_its_last_draft_parameters_and_feedback_as_data() -> None:
    from processors.models import ActionItem, DraftRequest
    from streams.models.tasks import LLMTasks
    from streams.stages.reply import revising

    chat, seen = backend([ok('{"reply": "Dear Ana, ... The Support Team"}')])
    last: Any = {
        "iteration": 1,
        "text": "Hi.",
        "temperature": 0.9,
        "model": "small-1",
        "score": 0.41,
        "failed": ["length", "action_items"],
        "feedback": ["say what happens with the refund"],
    }
    request = DraftRequest(
        "<a>", "billing", "Ana", "Charged twice",
        (ActionItem("refund", "refund the duplicate charge"),), 2, 0.6,
        ("say what happens with the refund",),
    )  # fmt: skip
    await LLMTasks().generate(chat, request, "I was charged twice.", revising(last))
    system, user = seen[0]["messages"]
    assert seen[0]["temperature"] == 0.6
    assert "Draft 1 (temperature 0.9, model small-1) scored 0.41" in user["content"]
    assert "Failed: length, action_items" in user["content"]
    assert "say what happens with the refund" in user["content"]
    assert "refund the duplicate charge" in user["content"]
    for untrusted in ("say what happens", "duplicate charge", "Hi."):
        assert untrusted not in system["content"]


async def test_every_llm_call_is_a_span_with_the_genai_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from streams.models import llm

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(llm, "tracer", lambda: provider.get_tracer("test"))
    chat, _ = backend([ok('{"level": 2, "reasons": []}', (12, 3))])
    await chat.structured(Urgency, ASK, temperature=0.3)
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "small-1"
    assert attributes["gen_ai.request.temperature"] == 0.3
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert str(attributes["gen_ai.response.id"]).startswith("chatcmpl-")
    assert "gen_ai.input.messages" not in attributes  # payloads only when asked
