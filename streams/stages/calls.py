"""What the model stages share: the worker's local models, and calls through the gate
that note on the ticket what they cost, or why no call was made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from streams.engine.records import Output
from streams.errors import Refused
from streams.guard.gate import Call, Fallback, ModelGate
from streams.models.local import LocalModels
from streams.stages.ticket import Ticket, decision

T = TypeVar("T")


@dataclass
class ModelCalls:
    models: LocalModels
    gate: ModelGate

    async def call(
        self,
        stage: str,
        model: str,
        ticket: Ticket,
        fn: Callable[[], T],
        *,
        began: float,
        fallback: Fallback[T] | None = None,
    ) -> Call[T] | None:
        """Call a model through budget, breaker and faults; None: the gate refused (the
        reason is on the ticket, for the escalation decider)."""
        try:
            call = await self.gate.call(
                stage,
                model,
                fn,
                message_id=ticket["message_id"],
                email_cost=ticket["cost"],
                fallback=fallback,
            )
        except Refused as exc:
            ticket["escalation_reason"] = exc.reason
            ticket["escalation_detail"] = str(exc)
            ticket["decisions"].append(decision(stage, model, exc.reason, began, str(exc)))
            return None
        ticket["cost"] = round(ticket["cost"] + call.cost, 6)
        ticket["model_calls"] += 1
        return call

    @staticmethod
    def spend(call: Call[T] | None) -> list[Output]:
        """The call's cost event for ``budget.spend``, written with the stage's output."""
        if call is None or call.spend_event is None:
            return []
        topic, key, value = call.spend_event
        return [Output(topic, value, key)]
