"""Prometheus metrics of one worker, served on ``MAILROOM_METRICS_PORT`` (0: not served).

Telemetry never breaks the data path: a port in use is logged, and the worker goes on.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("mailroom.metrics")

MODEL_LATENCY = Histogram(
    "mailroom_model_latency_seconds",
    "Model call latency",
    ["stage", "model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MODEL_CALLS = Counter(
    "mailroom_model_calls_total", "Model calls by outcome", ["stage", "model", "outcome"]
)
PROCESSED = Counter(
    "mailroom_messages_total", "Records handled by a stage, by outcome", ["stage", "outcome"]
)
RETRIES = Counter("mailroom_retries_total", "Records sent to a retry tier", ["stage", "tier"])
DEAD_LETTERS = Counter(
    "mailroom_dead_letters_total", "Records dead-lettered", ["stage", "error_class"]
)
BREAKER_STATE = Gauge("mailroom_breaker_state", "0 closed, 1 half-open, 2 open", ["model"])
BREAKER_TRANSITIONS = Counter(
    "mailroom_breaker_transitions_total", "Breaker transitions", ["model", "from_state", "to_state"]
)
ROUTED = Counter(
    "mailroom_routing_decisions_total", "Where stages sent records", ["stage", "destination"]
)
ESCALATIONS = Counter("mailroom_escalations_total", "Emails handed to a person", ["reason"])
RESPONSES = Counter("mailroom_responses_total", "Replies sent automatically")
DUPLICATES = Counter(
    "mailroom_duplicate_outcomes_dropped_total", "Second outcomes for a message id, dropped"
)
COST = Counter("mailroom_cost_total", "Spend on model calls", ["stage"])
LLM_TOKENS = Counter(
    "mailroom_llm_tokens_total", "Tokens of LLM calls", ["stage", "model", "direction"]
)
LLM_COST = Counter("mailroom_llm_cost_usd_total", "Spend on LLM calls (USD)", ["stage", "model"])
END_TO_END = Histogram(
    "mailroom_end_to_end_seconds",
    "Inbound to terminal",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LAG = Gauge(
    "mailroom_consumer_lag",
    "Records behind the end of the partition",
    ["group", "topic", "partition"],
)
STALLED = Gauge("mailroom_stage_stalled", "1 while a stage cannot write its outputs", ["stage"])

STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once (the hot path asks for the same few)."""
    return metric.labels(*labels)


def breaker_transition(model: str, old: str, new: str) -> None:
    BREAKER_STATE.labels(model).set(STATE_VALUE.get(new, -1))
    BREAKER_TRANSITIONS.labels(model, old, new).inc()


def serve(port: int, host: str = "127.0.0.1") -> bool:
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics not served: port %d: %s", port, exc)
        return False
    log.info("metrics on http://%s:%d/metrics", host, port)
    return True
