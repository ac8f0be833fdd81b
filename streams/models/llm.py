"""An OpenAI-compatible chat endpoint as a model backend (OpenAI, vLLM, Ollama, llama.cpp,
a LiteLLM proxy), through the official ``openai`` SDK.

- The SDK's own retries are off (``max_retries=0``): the retry tiers and the breakers are
  in charge. What goes wrong is sorted for them::

      timeout, connection error, 429, 5xx, a body that is not a completion
                        -> EndpointUnavailable (retried; Retry-After honoured)
      400, 401, 403, 404, 422, any other 4xx
                        -> BackendFailed("model_unavailable"): the next backend, or a person
      an answer that breaks the schema, twice (one repair quoting the error)
                        -> BackendFailed("invalid_model_output")

- Structured answers ask for JSON by schema (``response_format`` ``json_schema``, or
  ``json_object`` with the schema beside it for servers such as llama-cpp-python's that
  take only that) and are validated again in code with pydantic, ranges and enums
  included: a server's grammar may ignore numeric bounds.
- Each call is one span with the OpenTelemetry GenAI attributes; its cost is the usage
  times the endpoint's prices. Prompt and completion go on the span only when asked.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx2
import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from streams.endpoint import Endpoint
from streams.errors import BackendFailed, EndpointUnavailable
from streams.telemetry.tracing import tracer

M = TypeVar("M", bound=BaseModel)
Messages = list[dict[str, str]]
#: A rough, cautious count: prompts are budgeted at one token per 3 characters.
CHARS_PER_TOKEN = 3


@dataclass(frozen=True)
class Completion(Generic[M]):
    """A validated answer and what it took: tokens, cost, the response's id."""

    value: M
    endpoint: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    response_id: str
    finish_reason: str
    calls: int  # 2 when the first answer needed a repair


@dataclass(frozen=True)
class _Answer:
    text: str
    input_tokens: int
    output_tokens: int
    response_id: str
    finish_reason: str


class ChatBackend:
    """One endpoint: one SDK client shared by every call of the worker, at most
    ``max_concurrency`` calls in flight."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        *,
        http_client: httpx2.AsyncClient | None = None,
        log_payloads: bool = False,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.log_payloads = log_payloads
        self.client = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key(),
            max_retries=0,
            timeout=endpoint.timeout_s,
            http_client=http_client,
        )
        self.limit = asyncio.Semaphore(endpoint.max_concurrency)

    def worst_case_usd(self, prompt_chars: int, calls: int = 2) -> float:
        """What a task could cost at most: its prompt, generously counted, and every output
        token it may write, for the call and its one repair. A call whose worst case
        would pass the per-email budget is not made."""
        tokens_in = prompt_chars // CHARS_PER_TOKEN + 1
        return calls * self.endpoint.cost_usd(tokens_in, self.endpoint.max_output_tokens)

    async def structured(
        self, schema: type[M], messages: Messages, *, temperature: float
    ) -> Completion[M]:
        """An answer that validates against ``schema``; one repair, then BackendFailed."""
        answer = await self._complete(messages, temperature, schema)
        spent = [answer]
        try:
            value = schema.model_validate_json(answer.text)
        except ValidationError as first:
            repair = [
                *messages,
                {"role": "assistant", "content": answer.text[:4000]},
                {
                    "role": "user",
                    "content": "Your answer does not match the JSON schema: "
                    f"{_problems(first)}. Answer again with one JSON object only.",
                },
            ]
            answer = await self._complete(repair, temperature, schema)
            spent.append(answer)
            try:
                value = schema.model_validate_json(answer.text)
            except ValidationError as second:
                raise BackendFailed(
                    f"{self.name} ({self.endpoint.model}) answered outside the schema twice: "
                    f"{_problems(second)}",
                    reason="invalid_model_output",
                ) from second
        tokens_in = sum(a.input_tokens for a in spent)
        tokens_out = sum(a.output_tokens for a in spent)
        return Completion(
            value,
            self.name,
            self.endpoint.model,
            tokens_in,
            tokens_out,
            self.endpoint.cost_usd(tokens_in, tokens_out),
            answer.response_id,
            answer.finish_reason,
            len(spent),
        )

    async def _complete(
        self, messages: Messages, temperature: float, schema: type[BaseModel]
    ) -> _Answer:
        """One chat completion; every failure sorted into retried or not (module doc)."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": self.endpoint.model,
            "gen_ai.request.temperature": temperature,
            "gen_ai.request.max_tokens": self.endpoint.max_output_tokens,
            "mailroom.endpoint": self.name,
        }
        if self.log_payloads:
            attributes["gen_ai.input.messages"] = json.dumps(messages)
        with tracer().start_as_current_span(
            f"chat {self.endpoint.model}", attributes=attributes
        ) as span:
            began = time.perf_counter()
            async with self.limit:
                response = await self._request(messages, temperature, schema)
            answer = self._answer(response)
            span.set_attribute("gen_ai.usage.input_tokens", answer.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", answer.output_tokens)
            span.set_attribute("gen_ai.response.finish_reasons", [answer.finish_reason])
            span.set_attribute("gen_ai.response.id", answer.response_id)
            span.set_attribute("mailroom.latency_ms", (time.perf_counter() - began) * 1000)
            if self.log_payloads:
                span.set_attribute("gen_ai.output.messages", answer.text)
            return answer

    async def _request(
        self, messages: Messages, temperature: float, schema: type[BaseModel]
    ) -> Any:
        where = f"{self.name} ({self.endpoint.model})"
        try:
            return await self.client.chat.completions.create(
                model=self.endpoint.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=self.endpoint.max_output_tokens,
                extra_body={"response_format": self._format(schema)},
            )
        except openai.APITimeoutError as exc:
            raise EndpointUnavailable(f"{where} timed out") from exc
        except openai.APIConnectionError as exc:
            raise EndpointUnavailable(f"{where} is unreachable: {exc.__cause__ or exc}") from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status == 429 or status >= 500:
                raise EndpointUnavailable(
                    f"{where} answered HTTP {status}",
                    retry_after_s=_retry_after(exc.response.headers.get("retry-after")),
                ) from exc
            raise BackendFailed(f"{where} refused the request: HTTP {status}") from exc
        except ValueError as exc:  # a 200 whose body is not JSON
            raise EndpointUnavailable(f"{where} answered with a body that is not JSON") from exc

    def _answer(self, response: Any) -> _Answer:
        if not isinstance(response, ChatCompletion) or not response.choices:
            raise EndpointUnavailable(
                f"{self.name} ({self.endpoint.model}) answered with no chat completion"
            )
        choice = response.choices[0]
        usage = response.usage
        return _Answer(
            text=choice.message.content or "",
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            response_id=response.id or "",
            finish_reason=choice.finish_reason or "",
        )

    def _format(self, schema: type[BaseModel]) -> dict[str, Any]:
        definition = schema.model_json_schema()
        if self.endpoint.structured == "json_object":
            return {"type": "json_object", "schema": definition}
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": definition, "strict": False},
        }

    async def close(self) -> None:
        await self.client.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds form; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _problems(error: ValidationError) -> str:
    """The validation errors, short: field and what is wrong, never the input itself."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in error.errors()
    ]
    return "; ".join(parts[:5])[:500]
