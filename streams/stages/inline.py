"""Every stage of the pipeline in one process, with no broker: each output goes straight
to the handlers of the stages that read its topic, as the worker's consumers would. The
same handlers, models, gate and checks as a worker; for ``make eval`` and tests, which
measure what the stages decide, not how Kafka carries it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streams.engine.records import Incoming, Output
from streams.guard.budget import Budget
from streams.guard.faults import FaultInjector
from streams.guard.gate import ModelGate
from streams.models.local import LocalModels
from streams.settings import Settings
from streams.stages.calls import ModelCalls
from streams.stages.registry import Binding, bind_stages
from topics import catalog
from topics.codec import Codec

INBOUND = Codec("FeedbackEmail", max_bytes=None)


@dataclass
class Inline:
    settings: Settings
    models: LocalModels | None = None
    bindings: dict[str, Binding] = field(init=False)
    offset: int = 0

    def __post_init__(self) -> None:
        taxonomy = self.settings.taxonomy
        catalog.configure_routes(taxonomy.routes)
        if self.models is None:
            self.models = LocalModels(self.settings.data_dir, taxonomy, self.settings.classifier)
        gate = ModelGate(
            budget=Budget(self.settings),
            faults=FaultInjector({}),
            policy=self.settings.breaker,
            fallbacks=self.settings.fallbacks,
        )
        self.calls = ModelCalls(self.models, gate, self.settings)
        self.bindings = bind_stages(self.settings, self.calls)
        self.readers: dict[str, list[str]] = {}
        for spec in catalog.STAGES:
            for topic in spec.inputs:
                self.readers.setdefault(topic, []).append(spec.name)

    async def run(self, email: dict[str, object]) -> list[Output]:
        """Every record one email makes on its way (terminal ones included), in order."""
        key = str(email["message_id"]).encode()
        queue = deque([Output(catalog.INBOUND, INBOUND.encode(email), key)])
        written: list[Output] = []
        while queue:
            output = queue.popleft()
            written.append(output)
            for stage in self.readers.get(output.topic, ()):
                self.offset += 1
                record = Incoming(
                    output.topic, 0, self.offset, output.key, output.value, output.headers, 0
                )
                queue.extend(await self.bindings[stage].handler(record))
        return written

    async def close(self) -> None:
        await self.calls.backends.close()
