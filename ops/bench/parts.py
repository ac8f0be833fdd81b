"""Scenario 5, costs of parts: tracing on vs off (whole pipeline), the `avro` package vs
fastavro on real tickets, the router's decisions per second and p99, and what the prefilter
saves (model calls avoided per 100 emails, bundled samples and ../shared/data)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

from ops.bench.common import ROOT, SHARED_DATA, Bench, percentile
from ops.bench.pipeline import drain_and_pace
from processors.models import Email
from processors.prefilter import prefilter
from streams.engine.kafka import read_records
from streams.engine.records import Incoming
from streams.settings import Settings
from topics import catalog
from topics.codec import HEADER_LEN, Codec
from topics.registry import _plain_types

TRACING_MODES: dict[str, dict[str, str]] = {
    "off": {"MAILROOM_TRACING": "false"},
    "on": {"MAILROOM_TRACING": "true"},
    # The SDK's own sampler settings: 1 trace in 10 recorded, the decision made at the root.
    "on, 10% sampled": {
        "MAILROOM_TRACING": "true",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}


def tracing_cost(bench: Bench) -> tuple[dict[str, Any], Settings]:
    """Rounds in rotating order, one worker, a backlog each; emails/s per mode over the
    middle 80% of the outcomes (the pipeline full: its fill and drain, and the jitter of
    twelve stages starting up and joining their groups, are not the cost of tracing).

    The ratio is taken within each round (the modes of one round ran one after another, the
    rounds minutes apart) and the median over the rounds is reported: one backlog's rate
    first-to-last varied from 164 to 215 emails/s over three runs here with tracing off and
    nothing changed, more than the cost being measured."""
    rounds, backlog = (1, 60) if bench.quick else (3, 3_000)
    modes = list(TRACING_MODES)[: 2 if bench.quick else None]
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    first_to_last: dict[str, list[float]] = {mode: [] for mode in modes}
    settings: Settings | None = None  # the last traced run's, kept for reading
    for n in range(rounds):
        for mode in modes[n % len(modes) :] + modes[: n % len(modes)]:
            result = drain_and_pace(bench, 1, backlog, 0.0, TRACING_MODES[mode], keep=True)
            rates[mode].append(result["steady_per_s"])
            first_to_last[mode].append(result["sustained_per_s"])
            run = bench.base.model_copy(
                update={"topic_prefix": result["topic_prefix"], "app_id": result["app_id"]}
            )
            if mode == "on":
                if settings is not None:
                    bench.retire(settings)
                settings = run
            else:
                bench.retire(run)
    assert settings is not None
    ratios = {
        mode: [on / off for on, off in zip(rates[mode], rates["off"], strict=True)]
        for mode in modes
    }
    return {
        "rounds": rates,
        "rounds_first_to_last": first_to_last,
        "per_s": {mode: statistics.median(r) for mode, r in rates.items()},
        "round_ratios": ratios,
        "vs_off": {mode: statistics.median(r) for mode, r in ratios.items()},
    }, settings


def codec_cost(records: list[Incoming]) -> dict[str, Any]:
    """Decode + encode of the same Ticket values: fastavro (ours) vs the `avro` package."""
    import avro.io
    import avro.schema

    codec = Codec("Ticket")
    schema = avro.schema.parse(json.dumps(_plain_types(codec.schema.definition)))
    reader, writer = avro.io.DatumReader(schema), avro.io.DatumWriter(schema)
    values = [r.value for r in records if r.value]

    def with_avro(value: bytes) -> bytes:
        record = reader.read(avro.io.BinaryDecoder(io.BytesIO(value[HEADER_LEN:])))
        out = io.BytesIO()
        writer.write(record, avro.io.BinaryEncoder(out))
        return value[:HEADER_LEN] + out.getvalue()

    same = all(with_avro(v) == codec.encode(codec.decode(v)) for v in values[:50])
    timings = {}
    for name, fn in (
        ("fastavro", lambda v: codec.encode(codec.decode(v))),
        ("avro", with_avro),
    ):
        began = time.perf_counter()
        for v in values:
            fn(v)
        timings[name] = (time.perf_counter() - began) / len(values) * 1e6
    return {
        "tickets": len(values),
        "mean_bytes": sum(map(len, values)) // max(1, len(values)),
        "same_bytes": same,
        "fastavro_us": timings["fastavro"],
        "avro_us": timings["avro"],
        "avro_vs_fastavro": timings["avro"] / timings["fastavro"],
    }


def router_cost(bench: Bench, records: list[Incoming]) -> dict[str, Any]:
    """The route stage's handler (decode, decide, encode) on real triaged tickets."""
    from streams.guard.budget import Budget
    from streams.guard.faults import FaultInjector
    from streams.guard.gate import ModelGate
    from streams.models.local import LocalModels
    from streams.stages.calls import ModelCalls
    from streams.stages.triage import Triage

    settings = bench.base
    gate = ModelGate(budget=Budget(settings), faults=FaultInjector({}))
    stages = Triage(ModelCalls(LocalModels(settings.data_dir), gate), settings.max_email_bytes)
    repeat = max(1, 20_000 // max(1, len(records)))
    times: list[float] = []
    decisions: dict[str, int] = {}

    async def go() -> None:
        for _ in range(repeat):
            for record in records:
                began = time.perf_counter_ns()
                outputs = await stages.route(record)
                times.append((time.perf_counter_ns() - began) / 1000)
                decisions[outputs[0].topic] = decisions.get(outputs[0].topic, 0) + 1

    asyncio.run(go())
    return {
        "decisions": len(times),
        "per_s": len(times) / (sum(times) / 1e6),
        "p50_us": percentile(times, 50),
        "p99_us": percentile(times, 99),
        "routes": decisions,
    }


def shared_emails() -> Iterator[tuple[str, Email]]:
    """(dataset, email) from ../shared/data: Tobi Bueck tickets, CFPB complaints, banking77."""
    tobi = SHARED_DATA / "tobi_bueck_customer_support_tickets" / "tickets_v4_en.csv"
    cfpb = SHARED_DATA / "cfpb_consumer_complaints" / "cfpb_complaints_with_narratives.csv"
    bank = SHARED_DATA / "banking77" / "test.csv"
    sender = "Customer <customer@example.com>"
    with tobi.open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f)):
            yield "tobi_bueck", Email(f"t{n}", sender, row["subject"], row["body"])
    with cfpb.open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f)):
            body = row["Consumer complaint narrative"]
            yield "cfpb", Email(f"c{n}", sender, row["Issue"], body)
    with bank.open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f)):
            yield "banking77", Email(f"b{n}", sender, "", row["text"])


def prefilter_savings(calls_per_email: float) -> dict[str, Any]:
    sets: dict[str, list[Email]] = {"bundled demo.jsonl": []}
    for line in (ROOT / "processors" / "data" / "demo.jsonl").read_text().splitlines():
        row = json.loads(line)
        sets["bundled demo.jsonl"].append(
            Email(
                row["message_id"],
                row["sender"],
                row["subject"],
                row["body_text"],
                row.get("headers") or {},
            )
        )
    if SHARED_DATA.exists():
        for name, email in shared_emails():
            sets.setdefault(name, []).append(email)
    result: dict[str, Any] = {"model_calls_per_accepted_email": calls_per_email}
    for name, emails in sets.items():
        reasons: dict[str, int] = {}
        for email in emails:
            verdict = prefilter(email)
            if not verdict.accepted:
                reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
        ignored = sum(reasons.values())
        result[name] = {
            "emails": len(emails),
            "ignored": ignored,
            "reasons": reasons,
            "calls_avoided_per_100": 100 * ignored / len(emails) * calls_per_email,
        }
    return result


def calls_per_email(settings: Settings) -> float:
    calls = []
    for topic, name in ((catalog.RESPONSES, "Response"), (catalog.ESCALATIONS, "Escalation")):
        codec = Codec(name)
        calls += [codec.decode(r.value)["model_calls"] for r in read_records(settings, topic)]
    return statistics.mean(calls) if calls else float("nan")


def run(bench: Bench) -> dict[str, Any]:
    tracing, settings = tracing_cost(bench)
    triaged = read_records(settings, catalog.TRIAGED)
    calls = calls_per_email(settings)
    bench.retire(settings)
    return {
        "tracing": tracing,
        "codec": codec_cost(triaged),
        "router": router_cost(bench, triaged),
        "prefilter": prefilter_savings(calls),
    }


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    t, c, ro, p = r["tracing"], r["codec"], r["router"], r["prefilter"]
    out = [
        *(
            (
                f"whole pipeline, 1 worker, tracing {mode} (middle 80% of outcomes)",
                f"{t['per_s'][mode]:.1f} emails/s",
                "reference"
                if mode == "off"
                else f"{t['vs_off'][mode]:.3f} x off, median of rounds "
                + "/".join(f"{x:.2f}" for x in t.get("round_ratios", {}).get(mode, [])),
            )
            for mode in t["per_s"]
        ),
        (
            f"Ticket decode+encode, fastavro ({c['mean_bytes']} B)",
            f"{c['fastavro_us']:.0f} us",
            "reference",
        ),
        (
            "Ticket decode+encode, avro package",
            f"{c['avro_us']:.0f} us",
            f"{c['avro_vs_fastavro']:.1f} x fastavro",
        ),
        (
            "router: decisions/s (decode, decide, encode)",
            f"{ro['per_s']:,.0f}/s",
            f"p50 {ro['p50_us']:.0f} us, p99 {ro['p99_us']:.0f} us",
        ),
    ]
    per_email = p["model_calls_per_accepted_email"]
    for name, s in p.items():
        if not isinstance(s, dict):
            continue
        out.append(
            (
                f"prefilter, {name}: ignored",
                f"{s['ignored']}/{s['emails']}",
                f"{s['calls_avoided_per_100']:.1f} calls avoided/100 ({per_email:.2f}/email)",
            )
        )
    return out
