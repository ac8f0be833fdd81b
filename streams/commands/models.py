"""``mailroom models list``: each model stage's chain of backends, as a worker would run it,
with each backend's breaker state as a running worker reports it on its metrics port."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from processors import classify as classify_p
from processors import extract as extract_p
from processors import generate as generate_p
from processors import quality as quality_p
from processors import urgency as urgency_p
from streams.settings import LOCAL, MODEL_STAGES, Settings

LOCAL_MODELS = {
    "classify": classify_p.MODEL_NAME,
    "urgency": urgency_p.MODEL_NAME,
    "extract": extract_p.MODEL_NAME,
    "generate": generate_p.MODEL_NAME,
    "quality": quality_p.MODEL_NAME,
}
STATES = {0: "closed", 1: "half_open", 2: "open"}
_GAUGE = re.compile(r'^mailroom_breaker_state\{model="([^"]+)"\}\s+([-\d.e+]+)$', re.MULTILINE)


@dataclass(frozen=True)
class Row:
    stage: str
    position: int
    backend: str
    model: str
    where: str
    prices: str
    breaker: str


def breaker_states(settings: Settings, timeout_s: float = 1.0) -> dict[str, str] | None:
    """Breaker states a running worker serves on its metrics port; None if none answers."""
    if settings.metrics_port <= 0:
        return None
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (OSError, urllib.error.URLError):
        return None
    return {m: STATES.get(int(float(v)), v) for m, v in _GAUGE.findall(text)}


def chains(settings: Settings) -> list[Row]:
    states = breaker_states(settings)
    rows = []
    for stage in MODEL_STAGES:
        for n, backend in enumerate(settings.chain(stage), start=1):
            if backend == LOCAL:
                model, where, prices, key = (
                    LOCAL_MODELS[stage],
                    "in the worker",
                    "free",
                    LOCAL_MODELS[stage],
                )
            else:
                endpoint = settings.endpoints[backend]
                model, where, key = endpoint.model, endpoint.base_url, backend
                prices = (
                    f"${endpoint.input_usd_per_mtok:g} in / ${endpoint.output_usd_per_mtok:g} "
                    "out per Mtok"
                )
            if states is None:
                breaker = "no worker metrics"
            else:
                breaker = states.get(key, "closed (no call yet)")
            rows.append(Row(stage, n, backend, model, where, prices, breaker))
    return rows
