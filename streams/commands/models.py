"""``mailroom models list``: each model stage's chain of backends, as a worker would run it,
with each backend's breaker state as a running worker reports it on its metrics port."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from processors import classify as classify_p
from processors import extract as extract_p
from processors import generate as generate_p
from processors import quality as quality_p
from processors import urgency as urgency_p
from streams.models.trained import Evaluation
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


def print_evaluation(console: Any, model: str, evaluation: Evaluation) -> None:
    """The figures of ``models eval`` as tables on the console."""
    from rich.markup import escape
    from rich.table import Table

    console.print(
        f"model {model}: accuracy {evaluation.accuracy:.4f}, macro-F1 {evaluation.macro_f1:.4f}"
    )
    console.print(
        f"at the confidence floor {evaluation.floor:g}: {evaluation.automated_share:.1%} "
        f"automated, {evaluation.automated_accuracy:.4f} of those right"
    )
    per_class = Table("label", "precision", "recall", "f1", "support", title="per class")
    for label, row in evaluation.per_class.items():
        per_class.add_row(
            escape(label),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(int(row["support"])),
        )
    console.print(per_class)
    if len(evaluation.labels) <= 12:
        matrix = Table(
            "true \\ predicted", *map(escape, evaluation.labels), title="confusion matrix"
        )
        for label, counts in zip(evaluation.labels, evaluation.confusion, strict=True):
            matrix.add_row(escape(label), *(str(int(n)) for n in counts))
        console.print(matrix)
    else:
        confused = Table("true", "predicted as", "times", title="most frequent confusions")
        for true, predicted, count in evaluation.confusions:
            confused.add_row(escape(true), escape(predicted), str(count))
        console.print(confused)
    reliability = Table("confidence", "predictions", "accuracy", title="calibration")
    for low, high, accuracy, count in evaluation.calibration:
        reliability.add_row(f"{low:.1f}-{high:.1f}", str(count), f"{accuracy:.3f}")
    console.print(reliability)
