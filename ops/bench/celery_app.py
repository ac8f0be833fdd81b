"""The Celery + Redis pipeline of scenario 4: the same model functions as a Celery chain.

One task per model, chained; a transient ModelError is retried with the same delays as
mailroom's retry tiers; after the last retry the email goes to the stage's dead-letter
topic. Outcomes go to the same Kafka topics mailroom writes, keyed by message id.

    celery -A ops.bench.celery_app worker --pool threads --concurrency N
(settings from MAILROOM_*, the broker from BENCH_REDIS_URL, the world from BENCH_WORLD)
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import cache
from typing import Any

from celery import Celery, chain
from celery.signals import worker_shutdown
from confluent_kafka import Producer

from ops.bench.chain import FIRST, ModelError, SlowModels, World, outcome_of
from streams.settings import Settings
from topics import catalog

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
_lock = threading.Lock()


@cache
def settings() -> Settings:
    return Settings()


@cache
def models() -> SlowModels:
    world = World(**json.loads(os.environ.get("BENCH_WORLD", "{}")))
    with _lock:
        slow = SlowModels(settings().data_dir, world)
        _ = slow.local.classifier, slow.local.sentiment
    return slow


@cache
def producer() -> Producer:
    return Producer(settings().confluent_config(**{"acks": "all", "enable.idempotence": True}))


@worker_shutdown.connect
def _flush(**_: Any) -> None:
    producer().flush(30)


def emit(topic: str, message_id: str, value: dict[str, Any]) -> None:
    producer().produce(settings().topic(topic), json.dumps(value).encode(), message_id.encode())
    producer().poll(0)


def step(task: Any, stage: str, t: dict[str, Any], call: Any) -> dict[str, Any]:
    """Run one model for the ticket unless it is done; retry, then dead-letter."""
    if t["done"]:
        return t
    try:
        call(t)
    except ModelError as exc:
        delays = settings().retry_delays_s
        attempt = task.request.retries
        if attempt < len(delays):
            raise task.retry(exc=exc, countdown=delays[attempt], max_retries=len(delays)) from exc
        emit(f"{stage}.dlq", t["email"]["message_id"], {"error": str(exc)})
        t["done"] = "failed"
    return t


_first: list[float] = []


@app.task(bind=True)
def prefilter_t(self: Any, email: dict[str, Any]) -> dict[str, Any]:
    if not _first:
        with _lock:
            if not _first:
                _first.append(time.time())
                # Straight to the log file: Celery routes print() through its logger.
                os.write(1, f"celery: {FIRST}{_first[0]:.3f}\n".encode())
    reason = models().prefilter(email)
    return {"email": email, "done": "ignored" if reason else None, "reason": reason}


@app.task(bind=True)
def classify_t(self: Any, t: dict[str, Any]) -> dict[str, Any]:
    return step(self, "classify", t, lambda t: t.update(category=models().classify(t["email"])))


@app.task(bind=True)
def urgency_t(self: Any, t: dict[str, Any]) -> dict[str, Any]:
    def run(t: dict[str, Any]) -> None:
        t["urgency"] = models().urgency(t["email"])
        if t["urgency"] == "critical":
            t["done"] = "escalated"

    return step(self, "urgency", t, run)


@app.task(bind=True)
def extract_t(self: Any, t: dict[str, Any]) -> dict[str, Any]:
    return step(self, "extract", t, lambda t: t.update(items=models().extract(t["email"])))


@app.task(bind=True)
def generate_t(self: Any, t: dict[str, Any]) -> dict[str, Any]:
    def run(t: dict[str, Any]) -> None:
        t["draft"] = models().generate(t["email"], t["category"], t["items"])

    return step(self, "generate", t, run)


@app.task(bind=True)
def quality_t(self: Any, t: dict[str, Any]) -> dict[str, Any]:
    def run(t: dict[str, Any]) -> None:
        t["score"] = models().quality(t["email"], t["draft"], t["items"])

    return step(self, "quality", t, run)


@app.task
def deliver_t(t: dict[str, Any]) -> None:
    mid = t["email"]["message_id"]
    if t["done"] == "ignored":
        emit(catalog.IGNORED, mid, {"reason": t["reason"]})
    elif t["done"] == "escalated":
        emit(catalog.ESCALATIONS, mid, {"reason": "critical_urgency"})
    elif t["done"] is None:
        emit(outcome_of(t["urgency"], t.get("score")), mid, {"score": t.get("score")})


def submit(email: dict[str, Any]) -> None:
    chain(
        prefilter_t.s(email),
        classify_t.s(),
        urgency_t.s(),
        extract_t.s(),
        generate_t.s(),
        quality_t.s(),
        deliver_t.s(),
    ).apply_async()
