"""The Celery + Redis peer of scenario 4: mailroom's own stage handlers, as Celery tasks.

The same workflow, decided the same way: every stage's handler (``bind_stages``: the same
prompts, LLM client, answer checks, join, router, generate/quality loop with its revisions,
decider and its checks on each reply) runs as one Celery task per record, and each output
becomes a task of every stage that reads its topic, as ``streams.stages.inline`` passes
them on. What differs is the orchestration: Celery's Redis queue instead of Kafka topics;
a failure is retried with Celery's ``retry`` (the same delays as mailroom's tiers), then
dead-lettered; outcomes and dead letters go to the same Kafka topics mailroom writes.

The handlers are coroutines: they run on one event loop in the worker process, and each
of Celery's threads waits for the one it started, so the thread pool bounds what is in
hand (as ``stage_concurrency`` does in mailroom) and the endpoint's ``max_concurrency``
the LLM calls in flight, as in mailroom.

    celery -A ops.bench.celery_app worker --pool threads --concurrency N
    (settings from MAILROOM_*, the broker from BENCH_REDIS_URL)
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from functools import cache
from typing import Any

from celery import Celery
from celery.signals import worker_shutdown
from confluent_kafka import Producer

from ops.bench.chain import FIRST
from streams.engine.kafka import durable_producer
from streams.engine.records import Incoming, Output
from streams.engine.retry import is_retriable, route_failure
from streams.guard.budget import Budget
from streams.guard.faults import FaultInjector
from streams.guard.gate import ModelGate
from streams.models.local import LocalModels
from streams.settings import Settings
from streams.stages.calls import ModelCalls
from streams.stages.registry import Binding, bind_stages
from topics import catalog
from topics import headers as h

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("mailroom_bench", broker=REDIS)
app.conf.update(
    task_acks_late=True,  # a task is acked when done: a crashed worker's tasks come back
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bench",
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
#: Topics whose records leave the workflow: written to Kafka for the bench to read.
OUT = frozenset(catalog.terminal_topics())


class Runtime:
    """The worker process's stages: their handlers on one event loop thread."""

    def __init__(self) -> None:
        self.settings = Settings()
        taxonomy = self.settings.taxonomy
        catalog.configure_routes(taxonomy.routes)
        models = LocalModels(self.settings.data_dir, taxonomy, self.settings.classifier)
        _ = models.kb
        gate = ModelGate(
            budget=Budget(self.settings),
            faults=FaultInjector({}),
            policy=self.settings.breaker,
            fallbacks=self.settings.fallbacks,
        )
        self.calls = ModelCalls(models, gate, self.settings)
        self.bindings: dict[str, Binding] = bind_stages(self.settings, self.calls)
        self.readers: dict[str, list[str]] = {}
        for spec in catalog.STAGES:
            for topic in spec.inputs:
                self.readers.setdefault(topic, []).append(spec.name)
        self.producer: Producer = durable_producer(self.settings)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="handlers", daemon=True).start()
        self.first: float | None = None
        self._lock = threading.Lock()

    def handle(self, stage: str, record: Incoming) -> list[Output]:
        """The stage's handler on the loop; this thread waits for it."""

        async def run() -> list[Output]:
            return await self.bindings[stage].handler(record)

        done: Future[list[Output]] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return done.result()

    def emit(self, output: Output) -> None:
        self.producer.produce(
            self.settings.topic(output.topic), output.value, output.key, headers=output.headers
        )
        self.producer.poll(0)

    def intake(self) -> None:
        with self._lock:
            if self.first is None:
                self.first = time.time()
                # Straight to the log file: Celery routes print() through its logger.
                os.write(1, f"celery: {FIRST}{self.first:.3f}\n".encode())


_made = threading.Lock()


@cache
def _runtime() -> Runtime:
    return Runtime()


def runtime() -> Runtime:
    """The process's one runtime (Celery's threads ask for it at once on the first tasks)."""
    with _made:
        return _runtime()


@worker_shutdown.connect
def _flush(**_: Any) -> None:
    runtime().producer.flush(30)


def pack(value: bytes | None) -> str:
    """Bytes for a JSON message (Celery's default serializer)."""
    return base64.b64encode(value or b"").decode()


def unpack(text: str) -> bytes:
    return base64.b64decode(text)


@app.task(bind=True)
def stage_t(
    self: Any, stage: str, topic: str, key: str, value: str, headers: list[list[str]]
) -> None:
    """One record through one stage (bytes base64 in the JSON message); its outputs on to
    the stages that read them."""
    rt = runtime()
    if stage == "prefilter":
        rt.intake()
    record = Incoming(
        rt.settings.topic(topic),  # as a worker reads it: the deployment's name
        0,
        0,
        unpack(key),
        unpack(value),
        [(name, unpack(v)) for name, v in headers],
        int(time.time() * 1000),
    )
    try:
        outputs = rt.handle(stage, record)
    except Exception as exc:
        delays = rt.settings.retry_delays_s
        attempt = self.request.retries
        if is_retriable(exc) and attempt < len(delays):
            wait_s = max(delays[attempt], getattr(exc, "retry_after_s", None) or 0.0)
            raise self.retry(exc=exc, countdown=wait_s, max_retries=len(delays)) from exc
        spec = catalog.stage(stage)
        tried = h.replace(record.headers, {h.RETRY_ATTEMPT: str(len(delays))})
        rt.emit(route_failure(spec, replace(record, headers=tried), exc, delays))
        return
    for output in outputs:
        send(output)


def send(output: Output) -> None:
    """An output to Kafka (outcomes, dead letters) or to the stages that read it."""
    rt = runtime()
    if output.topic in OUT:
        rt.emit(output)
        return
    headers = [[name, pack(v)] for name, v in output.headers]
    for stage in rt.readers.get(output.topic, ()):
        stage_t.delay(stage, output.topic, pack(output.key), pack(output.value), headers)


def submit(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    """An inbound email into the workflow (the bridge a Celery team writes)."""
    packed = [[name, pack(v)] for name, v in headers]
    stage_t.delay("prefilter", catalog.INBOUND, pack(key), pack(value), packed)
