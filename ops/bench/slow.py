"""Scenario 4, slow and failing models: the same emails through (a) the sequential chain a
team writes first, (b) Celery + Redis running mailroom's own stage handlers, (c) mailroom.

(b) and (c) run the same workflow, decided the same way (the same handlers, prompts, LLM
client, answer checks, join, router, generate/quality loop with its revisions and
decider), every model stage on one scripted OpenAI-compatible server
(``ops.bench.llmworld``): each call takes 0.2-2 s and 12% of them fail (HTTP 503), and the
failures are retried with the same delays. Both have the same cap on LLM calls in flight
(the endpoint's ``max_concurrency``; Celery's thread pool is as large). The server counts
the calls each system made, so calls per email and the concurrency bound (the cap over
calls per email times the mean call latency, in emails/s) come from the same run. The
sequential chain (a) is the local models in a world as slow (``MAILROOM_FAULTS``-like
sleeps), one call at a time, no retries: a time cap instead of the whole backlog.

The emails are produced first, as a backlog; each system then starts and works them off.
Throughput is the emails with an outcome over the time from the system's first intake
(its first email taken in) to its last outcome, so start-up is left out for every system
and the fill and the drain are in.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ops.bench import celery_app
from ops.bench.chain import FIRST, World
from ops.bench.common import (
    Bench,
    first_intake_ms,
    free_port,
    outcome_topics,
    percentile,
    processes,
    read_outcomes,
    sample_emails,
    settle,
    wait_for,
    worker_env,
)
from ops.bench.llmworld import SupportModel
from ops.llmstub import Faulty, ScriptedServer
from streams.commands.produce import produce_emails
from streams.engine.kafka import read_records
from streams.settings import MODEL_STAGES, Settings
from topics import catalog


def summary(
    settings: Settings, count: int, started: float, ended: float, intake_ms: float
) -> dict[str, Any]:
    """Outcomes per second from the first intake to the last outcome; the wall time from
    the start of the system's processes is kept too."""
    found = read_outcomes(settings)
    latencies = found.latencies_ms()
    finished = found.finished_ms()
    work_s = (finished[-1] - intake_ms) / 1000 if finished else float("nan")
    # Most emails' rate: 99% of them over the time until they had their outcomes (the
    # last 1%, waiting out a retry tier's delay, left out).
    most = (99 * len(finished)) // 100
    most_s = (finished[most - 1] - intake_ms) / 1000 if most else 0.0
    steady = most / most_s if most_s > 0 else 0.0
    return {
        "emails": count,
        "wall_s": ended - started,
        "work_s": work_s,
        "per_s": len(finished) / work_s if finished else 0.0,
        "per_s_99": steady,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        **found.counts(),
    }


def logged_intake_ms(log: Path) -> float:
    """The ``first email at <epoch s>`` line the chain and the Celery worker print."""
    for line in log.read_text(errors="replace").splitlines():
        if FIRST in line:
            return float(line.rsplit(FIRST, 1)[1].split()[0]) * 1000
    raise RuntimeError(f"no {FIRST!r} line in {log}")


def sequential(bench: Bench, count: int, world: World, cap_s: float) -> dict[str, Any]:
    settings = bench.fresh("chain", outcome_topics())
    produce_emails(settings, sample_emails(count, "chain"))
    with processes(bench.data_dir) as procs:
        started = time.time()
        proc = procs.start(
            [sys.executable, "-m", "ops.bench.chain", json.dumps(asdict(world))],
            worker_env(settings),
            "chain",
        )
        log = procs.logs[proc.pid]
        wait_for(lambda: FIRST in log.read_text(errors="replace"), 120, "the chain's intake")
        intake_ms = logged_intake_ms(log)
        # The measurement window itself: a fixed wall-clock cap after the first intake.
        time.sleep(max(0.0, intake_ms / 1000 + cap_s - time.time()))
        proc.terminate()
        proc.wait(timeout=30)
        ended = time.time()
    result = summary(settings, count, started, ended, intake_ms)
    dropped = log.read_text(errors="replace").count(" failed: ")
    result.update(
        {
            "capped_at_s": cap_s,
            "lost": dropped,  # consumed, failed, logged, gone: auto-commit moved past them
            "not_reached": count
            - result["answered"]
            - result["escalated"]
            - result["ignored"]
            - dropped,
        }
    )
    bench.retire(settings)
    return result


def delays(bench: Bench) -> dict[str, str]:
    return {"MAILROOM_RETRY_DELAYS_S": "[0.2, 0.5, 1.0]"} if bench.quick else {}


def llm_env(server: ScriptedServer, cap: int) -> dict[str, str]:
    """Every model stage on the scripted server, nothing else; the same for both."""
    endpoint = {
        "base_url": server.base_url,
        "model": "support-1",
        "max_concurrency": cap,
        "timeout_s": 30,
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.6,
    }
    return {
        "MAILROOM_ENDPOINTS": json.dumps({"scripted": endpoint}),
        "MAILROOM_MODELS": json.dumps({s: ["scripted"] for s in MODEL_STAGES}),
        "MAILROOM_CASCADE": "false",  # every stage asks the LLM: the same calls for both
        "MAILROOM_BREAKER_THRESHOLD": "1000",  # 12% errors are retried, not routed around
        "MAILROOM_BUDGET_PER_EMAIL": "10",
    }


@contextmanager
def llm(bench: Bench, world: World) -> Iterator[tuple[ScriptedServer, Faulty]]:
    """A scripted server of its own for one system, its calls counted."""
    script = Faulty(
        SupportModel(bench.base.taxonomy),
        latency_s=world.latency_s,
        error_rate=world.error_rate,
        seed=7,
    )
    with ScriptedServer() as server:
        server.script(script)
        yield server, script


def calls_of(script: Faulty, count: int, cap: int) -> dict[str, Any]:
    """Calls per email, their mean latency, and the bound they put on emails/s."""
    calls = script.calls
    mean_s = script.waited_s / calls if calls else float("nan")
    per_email = calls / count
    return {
        "llm_calls": calls,
        "llm_failed": script.failed,
        "calls_per_email": per_email,
        "mean_call_s": mean_s,
        "bound_per_s": cap / (per_email * mean_s) if calls else float("nan"),
    }


def celery(bench: Bench, count: int, world: World, cap: int) -> dict[str, Any]:
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    settings = bench.fresh("celery", outcome_topics())
    emails = sample_emails(count, "celery")
    produce_emails(settings, emails)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with llm(bench, world) as (server, script), processes(bench.data_dir) as procs:
        env = worker_env(settings, BENCH_REDIS_URL=url, **llm_env(server, cap), **delays(bench))
        procs.start(
            [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env,
            "redis",
        )
        started = time.time()
        worker = procs.start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ops.bench.celery_app",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(cap),
                "--loglevel",
                os.environ.get("BENCH_CELERY_LOGLEVEL", "WARNING"),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            "celery",
        )
        celery_app.app.conf.broker_url = url
        # The bridge a Celery team writes: each inbound record into the workflow.
        for record in read_records(settings, catalog.INBOUND):
            celery_app.submit(record.key or b"", record.value or b"", record.headers)
        ended = settle(settings, count, 300 + count, grace_s=grace(bench))
        intake_ms = logged_intake_ms(procs.logs[worker.pid])
        found = calls_of(script, count, cap)
    result = {**summary(settings, count, started, ended, intake_ms), **found}
    bench.retire(settings)
    return result


def grace(bench: Bench) -> float:
    """How long after the last expected outcome a missing email is waited for."""
    return 10.0 if bench.quick else 90.0  # beyond the last retry tier's delay


def mailroom(bench: Bench, count: int, world: World, cap: int) -> dict[str, Any]:
    settings = bench.fresh("mailroom")
    produce_emails(settings, sample_emails(count, "mailroom"))
    with llm(bench, world) as (server, script), processes(bench.data_dir) as procs:
        extra = {
            **llm_env(server, cap),
            # room for the endpoint's cap in every stage: the cap is what binds
            "MAILROOM_STAGE_CONCURRENCY": str(cap),
            **delays(bench),
        }
        started = time.time()
        procs.worker(settings, **extra)
        ended = settle(settings, count, 300 + count, grace_s=grace(bench))
        found = calls_of(script, count, cap)
    result = {**summary(settings, count, started, ended, first_intake_ms(settings)), **found}
    bench.retire(settings)
    return result


def run(bench: Bench) -> dict[str, Any]:
    if bench.quick:
        world, count, cap_s, cap = World((0.01, 0.1), 0.12), 20, 3.0, 16
    else:
        world, count, cap_s, cap = World(), 2_000, 120.0, 80
    result: dict[str, Any] = {
        "world": asdict(world),
        "emails": count,
        "in_flight_cap": cap,
        "sequential": sequential(bench, count, world, cap_s),
        "celery": celery(bench, count, world, cap),
        "mailroom": mailroom(bench, count, world, cap),
    }
    for name in ("sequential", "celery"):
        result[f"mailroom_vs_{name}"] = result["mailroom"]["per_s"] / result[name]["per_s"]
    result["mailroom_vs_celery_99"] = result["mailroom"]["per_s_99"] / result["celery"]["per_s_99"]
    return result


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    low, high = r["world"]["latency_s"]
    head = (
        f"{r['emails']} emails, models {low}-{high} s, {r['world']['error_rate']:.0%} errors, "
        f"<= {r['in_flight_cap']} calls in flight"
    )
    out = [(head, "", "")]
    for name, label in (
        ("sequential", "(a) sequential chain"),
        ("celery", "(b) Celery + Redis, mailroom's handlers"),
        ("mailroom", "(c) mailroom"),
    ):
        s = r[name]
        capped = f", capped at {s['capped_at_s']:.0f}s" if "capped_at_s" in s else ""
        ratio = "" if name == "mailroom" else f"mailroom = {r[f'mailroom_vs_{name}']:.2f} x"
        out.append((f"{label}: throughput{capped}", f"{s['per_s']:.2f} emails/s", ratio))
        if "calls_per_email" in s:
            out.append(
                (
                    "  LLM calls per email (failed ones too), mean call",
                    f"{s['calls_per_email']:.2f}, {s['mean_call_s']:.2f} s",
                    f"{s['llm_calls']} calls, {s['llm_failed']} failed",
                )
            )
            steady = (
                "" if name == "mailroom" else (f"mailroom = {r['mailroom_vs_celery_99']:.2f} x")
            )
            out.append(
                (
                    "  99% of the emails: throughput to their outcomes",
                    f"{s['per_s_99']:.2f} emails/s",
                    steady,
                )
            )
            out.append(
                (
                    "  concurrency bound: cap / (calls per email x mean call)",
                    f"{s['bound_per_s']:.2f} emails/s",
                    f"99% = {s['per_s_99'] / s['bound_per_s']:.0%}, "
                    f"throughput = {s['per_s'] / s['bound_per_s']:.0%} of it",
                )
            )
        out.append(
            (
                "  latency p50/p95",
                f"{s['latency_ms']['p50'] / 1000:.1f}/{s['latency_ms']['p95'] / 1000:.1f} s",
                "",
            )
        )
        not_reached = f"/{s['not_reached']}" if "not_reached" in s else ""
        out.append(
            (
                "  answered/escalated/failed/lost" + ("/not reached" if not_reached else ""),
                f"{s['answered']}/{s['escalated']}/{s['failed']}/{s['lost']}{not_reached}",
                f"ignored {s['ignored']}, dup {s['duplicates']}",
            )
        )
    return out
