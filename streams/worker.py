"""``mailroom worker``: run some or all stages in one process.

Each stage runs two loops: its main input, and its retry tiers (non-blocking). All stages
of the worker share one idempotent producer, the local models, the circuit breakers, the
fault injector and the budget.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from streams.engine.runner import Handler, StageRunner, durable_async_producer, stage_limit
from streams.guard.budget import Budget
from streams.guard.faults import FaultInjector, parse_faults
from streams.guard.gate import ModelGate
from streams.models.local import LocalModels
from streams.settings import Settings
from streams.stages.handlers import Stages
from streams.stages.join import TriageJoin
from streams.stages.ledger import TerminalLedger
from streams.telemetry import metrics
from streams.telemetry.tracing import setup_tracing, shutdown_tracing
from topics import catalog

log = logging.getLogger("mailroom.worker")


@dataclass
class Worker:
    """The parts of one worker process, for tests and the CLI to inspect."""

    settings: Settings
    stages: Sequence[str] = catalog.STAGE_NAMES
    runners: list[StageRunner] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = FaultInjector(parse_faults(self.settings.faults))
        self.budget = Budget(self.settings)
        self.gate = ModelGate(
            budget=self.budget,
            faults=self.faults,
            threshold=self.settings.breaker_threshold,
            cooldown_s=self.settings.breaker_cooldown_s,
            failure_rate=self.settings.breaker_failure_rate,
            window=self.settings.breaker_window,
            min_calls=self.settings.breaker_min_calls,
            fallbacks=self.settings.fallbacks,
            on_transition=lambda model, old, new: metrics.breaker_transition(
                model, old.value, new.value
            ),
        )
        self.models = LocalModels(self.settings.data_dir)
        self.ledger = TerminalLedger(self.settings)
        self.handlers = Stages(
            models=self.models,
            gate=self.gate,
            ledger=self.ledger,
            max_email_bytes=self.settings.max_email_bytes,
        )

    async def run(self, stop: asyncio.Event) -> None:
        if "classify" in self.stages:
            _ = self.models.classifier  # train or load now, not on the first email
        producer = durable_async_producer(self.settings)
        await producer.start()
        tasks = [asyncio.create_task(self.budget.follow(stop))]
        try:
            for name in self.stages:
                tasks.extend(self._start_stage(name, producer, stop))
            log.info("worker running stages: %s", ", ".join(self.stages))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()

    def _start_stage(
        self, name: str, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> list[asyncio.Task[None]]:
        spec = catalog.stage(name)
        tasks = []
        limit = stage_limit(self.settings)  # first tries and retries share the stage's limit
        if name == "join":
            retrying_s = sum(self.settings.retry_delays_s)
            if self.settings.join_timeout_s <= retrying_s:
                log.warning(
                    "join timeout %.0fs is not above the retry delays (%.0fs in all): a half "
                    "that is being retried will be escalated as join_timeout",
                    self.settings.join_timeout_s,
                    retrying_s,
                )
            join = TriageJoin(self.settings, self.settings.join_timeout_s)
            handler: Handler = join.handle
            main = StageRunner(spec, handler, self.settings, producer, limit=limit)
            join.runner = main
            tasks.append(
                asyncio.create_task(main.run(stop, on_assign=join.restore, on_revoke=join.revoke))
            )
            tasks.append(asyncio.create_task(join.expire(stop)))
        else:
            handler = getattr(self.handlers, name)
            main = StageRunner(spec, handler, self.settings, producer, limit=limit)
            if name == "escalate":
                tasks.append(
                    asyncio.create_task(
                        main.run(stop, on_assign=self.ledger.restore, on_revoke=self.ledger.revoke)
                    )
                )
            else:
                tasks.append(asyncio.create_task(main.run(stop)))
        retry = StageRunner(spec, handler, self.settings, producer, retries=True, limit=limit)
        tasks.append(asyncio.create_task(retry.run(stop)))
        self.runners += [main, retry]
        return tasks


async def run_worker(
    settings: Settings,
    stages: Sequence[str] = catalog.STAGE_NAMES,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    setup_tracing("mailroom-worker", settings.data_dir, enabled=settings.tracing)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    try:
        await Worker(settings, stages).run(stop)
    finally:
        shutdown_tracing()
