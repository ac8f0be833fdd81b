"""``mailroom worker``: run some or all stages in one process.

Each stage runs two loops: its main input, and its retry tiers (non-blocking), plus any
background work its binding names; each loop has its own consumer and (transactional)
producer. All stages of the worker share the local models, the circuit breakers, the
fault injector and the budget.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.engine.runner import StageRunner, stage_limit
from streams.guard.budget import Budget
from streams.guard.faults import FaultInjector, parse_faults
from streams.guard.gate import ModelGate
from streams.models.local import LocalModels
from streams.settings import Settings
from streams.stages.calls import ModelCalls
from streams.stages.registry import Binding, bind_stages
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
            policy=self.settings.breaker,
            fallbacks=self.settings.fallbacks,
            on_transition=lambda model, old, new: metrics.breaker_transition(
                model, old.value, new.value
            ),
        )
        taxonomy = self.settings.taxonomy
        catalog.configure_routes(taxonomy.routes)
        self.models = LocalModels(self.settings.data_dir, taxonomy, self.settings.classifier)
        self.calls = ModelCalls(self.models, self.gate, self.settings)
        self.bindings = bind_stages(self.settings, self.calls)

    async def run(self, stop: asyncio.Event) -> None:
        if "classify" in self.stages or "join" in self.stages:
            # Load now, not on the first email; a model whose labels are not the
            # taxonomy's categories refuses to start here.
            _ = self.models.classifier
        if {"generate", "quality", "escalate"} & set(self.stages):
            _ = self.models.kb
        if "join" in self.stages:
            self._check_join_timeout()
        settle_heap()
        share_the_gil()
        tasks = [asyncio.create_task(self.budget.follow(stop))]
        try:
            for name in self.stages:
                tasks.extend(self._start(name, self.bindings[name], stop))
            log.info("worker running stages: %s", ", ".join(self.stages))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.calls.backends.close()

    def _start(self, name: str, binding: Binding, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        spec = catalog.stage(name)
        limit = stage_limit(self.settings)  # first tries and retries share the stage's limit
        main = StageRunner(spec, binding.handler, self.settings, limit=limit)
        retry = StageRunner(spec, binding.handler, self.settings, retries=True, limit=limit)
        self.runners += [main, retry]
        run = main.run(stop, on_assign=binding.on_assign, on_revoke=binding.on_revoke)
        return [
            asyncio.create_task(run),
            asyncio.create_task(retry.run(stop)),
            *(asyncio.create_task(work(main.emit, stop)) for work in binding.background),
        ]

    def _check_join_timeout(self) -> None:
        retrying_s = sum(self.settings.retry_delays_s)
        if self.settings.join_timeout_s <= retrying_s:
            log.warning(
                "join timeout %.0fs is not above the retry delays (%.0fs in all): a half "
                "that is being retried will be escalated as join_timeout",
                self.settings.join_timeout_s,
                retrying_s,
            )


#: Allocations between two collections of the youngest generation (Python's default: 700).
GC_YOUNG = 20_000
#: How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
SWITCH_INTERVAL_S = 0.001


def settle_heap() -> None:
    """Once start-up has loaded the models and indexes: everything alive now is left out
    of the garbage collector's scans (``gc.freeze``), and the youngest generation is
    collected every ``GC_YOUNG`` allocations. A message allocates hundreds of objects that
    reference counting frees at once; with the defaults, every few hundred messages a full
    collection walked all of the models' objects again (46 us per message of a hop's 146
    on the bench machine, in a process without models)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, old)


def share_the_gil() -> None:
    """A thread waiting for the GIL gets it within ``SWITCH_INTERVAL_S`` (1 ms, not 5).

    Every Kafka call of a stage blocks on a thread of its own (the poll, the offsets and
    the commit of a transaction) with the GIL released, and needs it back to return; while
    the event loop runs handlers, each return waited up to the 5 ms default, several times
    a hop. Measured with the client alone (``ops.bench.chainref``: eight transactional
    hops at 80 records/s in one process, two runs each), a hop's wait was 3.5 and 5.3 ms
    p50; with a thread beside them holding the GIL half the time, as a busy worker's loop
    does, 21.0 and 17.6 ms; the same with a 1 ms interval, 9.5 and 7.7 ms. A switch is
    only forced when a thread waits, so an idle worker pays nothing."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


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
