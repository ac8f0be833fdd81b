"""What the model stages share: each stage's chain of backends (``MAILROOM_MODELS``), the
local models, and the gate every call goes through. A call notes on the ticket what it
cost, or, when no backend could answer, why, for the escalation decider.

For each backend of the stage's chain, in order::

    "local"           the local model (and its fallback), through its breaker and budget
    an endpoint name  the LLM task on that endpoint, through the endpoint's breaker and the
                      budget (its worst case must fit)
    refused (breaker open, over budget) or failed (4xx, answer invalid after a repair)
                      -> the next backend; after the last: the ticket goes to a person
    unavailable (timeout, 429, 5xx) -> the retry tiers, whole stage again
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from streams.engine.records import Output
from streams.errors import BackendFailed, Refused
from streams.guard.budget import fold_spend
from streams.guard.gate import Call, Fallback, Metered, ModelGate
from streams.models.backends import Backends
from streams.models.llm import ChatBackend
from streams.models.local import LocalModels
from streams.models.tasks import LLMTasks
from streams.settings import LOCAL, Settings
from streams.stages.ticket import Ticket, decision

T = TypeVar("T")
Task = Callable[[ChatBackend], Awaitable[tuple[T, Metered]]]


@dataclass
class ModelCalls:
    models: LocalModels
    gate: ModelGate
    settings: Settings = field(default_factory=Settings)
    tasks: LLMTasks = field(init=False)
    backends: Backends = field(init=False)

    def __post_init__(self) -> None:
        self.backends = Backends(self.settings)
        self.tasks = LLMTasks(taxonomy=self.models.taxonomy)

    async def call(
        self,
        stage: str,
        model: str,
        ticket: Ticket,
        fn: Callable[[], T | Awaitable[T]],
        *,
        began: float,
        fallback: Fallback[T] | None = None,
        llm: Task[Any] | None = None,
        prompt_chars: int = 0,
    ) -> Call[T] | None:
        """The first answer the stage's chain gives; None: no backend could (the reason
        is on the ticket)."""
        refusals: list[Refused | BackendFailed] = []
        for backend in self.settings.chain(stage) if llm is not None else (LOCAL,):
            try:
                if backend == LOCAL:
                    call = await self.gate.call(
                        stage,
                        model,
                        fn,
                        message_id=ticket["message_id"],
                        email_cost=ticket["cost"],
                        fallback=fallback,
                    )
                else:
                    assert llm is not None  # an endpoint is in the chain only with a task
                    chat = self.backends.chat(backend)
                    call = await self.gate.call_endpoint(
                        stage,
                        backend,
                        partial(llm, chat),
                        message_id=ticket["message_id"],
                        email_cost=ticket["cost"],
                        worst_case=chat.worst_case_usd(prompt_chars + 3000),
                    )
            except (Refused, BackendFailed) as exc:
                refusals.append(exc)
                ticket["decisions"].append(decision(stage, backend, exc.reason, began, str(exc)))
                continue
            ticket["cost"] = round(ticket["cost"] + call.cost, 6)
            ticket["model_calls"] += 1
            return call
        last = refusals[-1]
        ticket["escalation_reason"] = last.reason
        ticket["escalation_detail"] = str(last)
        return None

    @staticmethod
    def spend(call: Call[T] | None) -> list[Output]:
        """The call's cost event for ``budget.spend``, written with the stage's output."""
        if call is None or call.spend_event is None:
            return []
        topic, key, value = call.spend_event
        return [Output(topic, value, key, fold=fold_spend)]

    @staticmethod
    def describe(call: Call[Any]) -> str:
        """How a call was paid for, for the decision path."""
        if not call.endpoint:
            return ""
        tokens_in, tokens_out = call.tokens
        return (
            f"; {call.endpoint} {call.model} tokens {tokens_in}/{tokens_out} cost {call.cost:.6f}"
        )
