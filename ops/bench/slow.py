"""Scenario 4, slow and failing models: the same emails through (a) the sequential chain a
team writes first, (b) Celery + Redis chaining the same model functions, (c) mailroom.

Every model call takes 0.2-2 s and fails 12% of the time (mailroom: ``MAILROOM_FAULTS``;
the others: ``ops.bench.chain.SlowModels``). The emails are produced first, as a backlog;
each system then starts and works them off. Concurrency is the same cap on model calls in
flight: mailroom's five model stages with ``stage_concurrency`` each (first tries and
retries share it), Celery's thread pool with five times that. The sequential chain does one
call at a time, so it gets a time cap instead of the whole backlog.

Throughput is the emails with an outcome over the time from the system's first intake
(its first email taken in) to its last outcome, so start-up is left out for every system
and the fill and the drain are in. Celery works breadth-first (every email's first task
before any second one), so its outcomes come in a burst at the end: first-to-last outcome
would flatter it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
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
from streams.commands.produce import produce_emails
from streams.engine.kafka import read_records
from streams.settings import Settings
from topics import catalog
from topics.codec import InboundCodec

MODEL_STAGES = 5


def summary(
    settings: Settings, count: int, started: float, ended: float, intake_ms: float
) -> dict[str, Any]:
    """Outcomes per second from the first intake to the last outcome; the wall time from
    the start of the system's processes is kept too."""
    found = read_outcomes(settings)
    latencies = found.latencies_ms()
    finished = found.finished_ms()
    work_s = (finished[-1] - intake_ms) / 1000 if finished else float("nan")
    return {
        "emails": count,
        "wall_s": ended - started,
        "work_s": work_s,
        "per_s": len(finished) / work_s if finished else 0.0,
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
    return result


def delays(bench: Bench) -> dict[str, str]:
    return {"MAILROOM_RETRY_DELAYS_S": "[0.2, 0.5, 1.0]"} if bench.quick else {}


def celery(bench: Bench, count: int, world: World, concurrency: int) -> dict[str, Any]:
    redis = shutil.which("redis-server")
    if redis is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    settings = bench.fresh("celery", outcome_topics())
    emails = sample_emails(count, "celery")
    produce_emails(settings, emails)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = worker_env(
        settings, BENCH_REDIS_URL=url, BENCH_WORLD=json.dumps(asdict(world)), **delays(bench)
    )
    with processes(bench.data_dir) as procs:
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
                str(concurrency),
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            "celery",
        )
        celery_app.app.conf.broker_url = url
        codec = InboundCodec()
        # The bridge a Celery team writes: Kafka inbound -> one chain per email.
        for record in read_records(settings, catalog.INBOUND):
            celery_app.submit(
                codec.decode_inbound(record.value, key=record.key, timestamp_ms=record.timestamp)
            )
        ended = settle(settings, count, 300 + count, grace_s=grace(bench))
        intake_ms = logged_intake_ms(procs.logs[worker.pid])
    return summary(settings, count, started, ended, intake_ms)


def grace(bench: Bench) -> float:
    """How long after the last expected outcome a missing email is waited for."""
    return 10.0 if bench.quick else 90.0  # beyond the last retry tier's delay


def mailroom(bench: Bench, count: int, world: World, concurrency: int) -> dict[str, Any]:
    settings = bench.fresh("mailroom")
    produce_emails(settings, sample_emails(count, "mailroom"))
    extra = {
        "MAILROOM_FAULTS": world.faults(),
        "MAILROOM_STAGE_CONCURRENCY": str(concurrency),
        **delays(bench),
    }
    with processes(bench.data_dir) as procs:
        started = time.time()
        procs.worker(settings, **extra)
        ended = settle(settings, count, 300 + count, grace_s=grace(bench))
    return summary(settings, count, started, ended, first_intake_ms(settings))


def run(bench: Bench) -> dict[str, Any]:
    if bench.quick:
        world, count, cap_s, per_stage = World((0.01, 0.1), 0.12), 20, 3.0, 8
    else:
        world, count, cap_s, per_stage = World(), 2_000, 120.0, 16
    threads = per_stage * MODEL_STAGES
    result: dict[str, Any] = {
        "world": asdict(world),
        "emails": count,
        "in_flight_cap": threads,
        "sequential": sequential(bench, count, world, cap_s),
        "celery": celery(bench, count, world, threads),
        "mailroom": mailroom(bench, count, world, per_stage),
    }
    for name in ("sequential", "celery"):
        result[f"mailroom_vs_{name}"] = result["mailroom"]["per_s"] / result[name]["per_s"]
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
        ("celery", "(b) Celery + Redis"),
        ("mailroom", "(c) mailroom"),
    ):
        s = r[name]
        capped = f", capped at {s['capped_at_s']:.0f}s" if "capped_at_s" in s else ""
        ratio = "" if name == "mailroom" else f"mailroom = {r[f'mailroom_vs_{name}']:.1f} x"
        out.append((f"{label}: throughput{capped}", f"{s['per_s']:.2f} emails/s", ratio))
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
