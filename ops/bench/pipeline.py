"""Scenario 3, the whole pipeline with the local models, worker processes as a user runs them.

Highest sustained rate: a backlog of emails, then the workers started; the rate is the
backlog over the time from the first prefilter output to the last outcome (broker
timestamps), so the workers' start-up is left out and the pipeline's fill and drain are in.
Latency: with the same workers warm, emails produced at half that rate; each email's latency
is its outcome's broker timestamp minus its inbound one.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ops.bench.chainref import chain_latency, median_hop_wait
from ops.bench.common import (
    Bench,
    first_intake_ms,
    hop_waits,
    percentile,
    processes,
    read_outcomes,
    sample_emails,
    settle,
)
from ops.bench.cpu import CpuSampler
from streams.commands.produce import produce_emails


def drain_and_pace(
    bench: Bench,
    workers: int,
    backlog: int,
    paced_s: float,
    env: dict[str, str] | None = None,
    *,
    module: str = "streams.cli",
    pace: float | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """``env``: the workers' settings; ``module``: the worker's entry point; ``pace``:
    emails/s for the latency measurement (default: half the sustained rate); ``keep``:
    leave the run's topics (for reading them afterwards; retire them then)."""
    env = env or {}
    settings = bench.fresh(f"pipe{workers}")
    produce_emails(settings, sample_emails(backlog, "backlog"))
    with processes(bench.data_dir) as procs, CpuSampler() as cpu:
        cpu.watch("broker", bench.broker_pid())
        began = time.time()
        for _ in range(workers):
            cpu.watch("workers", procs.worker(settings, module, **env).pid)
        settle(settings, backlog, 60 + backlog / 2)
        drained = read_outcomes(settings)
        first = first_intake_ms(settings)
        finished = drained.finished_ms()
        rate = backlog / ((finished[-1] - first) / 1000)
        # what the workers and the broker used from the first intake to the last outcome
        drain_cpu = cpu.cores(first / 1000, finished[-1] / 1000)
        # The middle 80% of the outcomes: the pipeline full, its fill and drain and the
        # stages' start-up (one joining its group a second later) left out.
        low, high = finished[len(finished) // 10], finished[len(finished) * 9 // 10]
        steady = (len(finished) * 9 // 10 - len(finished) // 10) / max((high - low) / 1000, 1e-3)
        first_outcome_s = finished[0] / 1000 - began
        result: dict[str, Any] = {
            "workers": workers,
            "topic_prefix": settings.topic_prefix,
            "app_id": settings.app_id,
            "backlog": backlog,
            "sustained_per_s": rate,
            "steady_per_s": steady,
            "first_outcome_after_start_s": first_outcome_s,
            "backlog_counts": drained.counts(),
            "cpu_cores": drain_cpu,
        }
        if paced_s > 0:
            half = pace or rate / 2
            count = max(20, int(half * paced_s))
            emails = sample_emails(count, "paced")
            paced_from = time.time()
            produce_emails(settings, emails, rate=half)
            paced_cpu = cpu.cores(paced_from, time.time())
            settle(settings, backlog + count, 120 + paced_s)
            paced = read_outcomes(settings)
            ids = {e["message_id"] for e in emails}
            latencies = paced.latencies_ms(ids)
            result.update(
                {
                    "paced_rate_per_s": half,
                    "paced_emails": count,
                    "latency_ms": {
                        "p50": percentile(latencies, 50),
                        "p95": percentile(latencies, 95),
                        "p99": percentile(latencies, 99),
                        "max": max(latencies),
                    },
                    "paced_counts": paced.counts(),
                    "paced_cpu_cores": paced_cpu,
                    "hop_wait_ms": hop_waits(settings.data_dir, ids),
                }
            )
    if not keep:
        bench.retire(settings)
    return result


def run(bench: Bench) -> dict[str, Any]:
    backlog, paced_s = (60, 2.0) if bench.quick else (2_000, 30.0)
    one = drain_and_pace(bench, 1, backlog, paced_s)
    alo = drain_and_pace(bench, 1, backlog, paced_s, {"MAILROOM_EXACTLY_ONCE": "false"})
    result = {
        "one_worker": one,
        "at_least_once": alo,
        "eos_vs_alo": one["sustained_per_s"] / alo["sustained_per_s"],
    }
    if not bench.quick:
        two = drain_and_pace(bench, 2, backlog, paced_s)
        result.update(two_workers=two, two_vs_one=two["sustained_per_s"] / one["sustained_per_s"])
    # The orchestration alone: the same worker with stand-ins that answer at once for its
    # models (ops.bench.instant), at half its own rate and at a low rate.
    instant = "ops.bench.instant"
    result["instant"] = drain_and_pace(bench, 1, backlog, paced_s, module=instant)
    result["instant_alo"] = drain_and_pace(
        bench, 1, backlog, paced_s, {"MAILROOM_EXACTLY_ONCE": "false"}, module=instant
    )
    result["instant_low"] = drain_and_pace(
        bench, 1, backlog // 4, paced_s, module=instant, pace=LOW_RATE
    )
    # The floor of those latencies: the client's own chain of as many transactional hops,
    # nothing of mailroom in it, at the same rates (ops.bench.chainref).
    result["chain_half"] = chain_latency(bench, result["instant"]["paced_rate_per_s"], paced_s)
    result["chain_low"] = chain_latency(bench, LOW_RATE, paced_s)
    return result


#: emails/s of the low-load latency measurement
LOW_RATE = 25.0


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for key in (
        "one_worker",
        "at_least_once",
        "two_workers",
        "instant",
        "instant_alo",
        "instant_low",
    ):
        if key in r:
            out += _run_rows(key, r[key], r)
        chain = {"instant": "chain_half", "instant_low": "chain_low"}.get(key)
        if chain in r and key in r:
            out += _chain_rows(r[chain], r[key])
    return out


def _run_rows(key: str, w: dict[str, Any], r: dict[str, Any]) -> list[tuple[str, str, str]]:
    c = w["backlog_counts"]
    local = r["one_worker"]["sustained_per_s"]
    ratio = {
        "one_worker": "reference",
        "at_least_once": f"exactly-once = {r['eos_vs_alo']:.2f} x this",
        "two_workers": f"{r.get('two_vs_one', 0):.2f} x one worker",
        "instant": f"{w['sustained_per_s'] / local:.2f} x local models",
        "instant_alo": "",
        "instant_low": "",
    }[key]
    mode = "at-least-once" if key in ("at_least_once", "instant_alo") else "exactly-once"
    models = ", no-op models" if key.startswith("instant") else ""
    out = [
        (
            f"{w['workers']} worker(s), {mode}{models}: sustained rate, {w['backlog']} emails",
            f"{w['sustained_per_s']:.1f} emails/s",
            ratio,
        ),
        (
            "  outcomes (answered/escalated/ignored/failed/lost/dup)",
            f"{c['answered']}/{c['escalated']}/{c['ignored']}/{c['failed']}/{c['lost']}"
            f"/{c['duplicates']}",
            "",
        ),
    ]
    if w.get("cpu_cores"):
        out.append(
            _cpu_row("  CPU, first intake to last outcome", w["cpu_cores"], w["sustained_per_s"])
        )
    if "latency_ms" not in w:
        return out
    lat = w["latency_ms"]
    out.append(
        (
            f"  latency at {w['paced_rate_per_s']:.1f} emails/s "
            f"({'low' if key == 'instant_low' else 'half'}), p50/p95/p99",
            f"{lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f} ms",
            "",
        )
    )
    if w.get("paced_cpu_cores"):
        out.append(_cpu_row("    CPU meanwhile", w["paced_cpu_cores"], w["paced_rate_per_s"]))
    waits = w.get("hop_wait_ms", {})
    if key not in ("one_worker", "instant") and waits:  # the list twice, else the middle
        p50 = percentile([v["p50"] for v in waits.values()], 50)
        p99 = percentile([v["p99"] for v in waits.values()], 50)
        out.append(
            (
                "    queue wait per hop, p50/p99 (median over the hops)",
                f"{p50:.0f}/{p99:.0f} ms",
                f"{sum(v['count'] for v in waits.values())} hops",
            )
        )
        return out
    for topic, wait in waits.items():
        name = topic.removeprefix(w["topic_prefix"])
        out.append(
            (
                f"    queue wait before {name}, p50/p99",
                f"{wait['p50']:.0f}/{wait['p99']:.0f} ms",
                f"{wait['count']} hops",
            )
        )
    return out


def _cpu_row(label: str, cores: dict[str, float], per_s: float) -> tuple[str, str, str]:
    """Cores used by the workers and the broker, and their CPU per email."""
    workers, broker = cores.get("workers", 0.0), cores.get("broker", 0.0)
    per_email = (workers + broker) / per_s * 1000 if per_s > 0 else float("nan")
    return (
        f"{label}: workers + broker, of {os.cpu_count()} cores",
        f"{workers:.2f} + {broker:.2f} cores",
        f"{per_email:.1f} ms of CPU per email",
    )


def _chain_rows(chain: dict[str, Any], w: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The client's own chain beside mailroom's latency at the same rate."""
    lat, mine = chain["latency_ms"], w["latency_ms"]
    cores = chain["cpu_cores"]
    return [
        (
            f"  raw confluent-kafka chain, {chain['hops']} transactional hops, same rate",
            f"{lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f} ms",
            f"mailroom p50 = {mine['p50'] / lat['p50']:.2f} x, "
            f"p99 = {mine['p99'] / lat['p99']:.2f} x",
        ),
        (
            "    its queue wait per hop p50 (median over the hops); transactions/s",
            f"{median_hop_wait(chain):.0f} ms; {chain['transactions_per_s']:.0f}/s",
            f"CPU: chain {cores['chain']:.2f} + broker {cores['broker'] or 0:.2f} cores",
        ),
    ]
