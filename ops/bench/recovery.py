"""Scenario 6, recovery: two workers under a steady load, one SIGKILLed mid-run.

- partitions back: for each ``emails.inbound`` partition, the first email produced after
  the kill that has an outcome; the latest of those outcomes, minus the kill time, is when
  the dead worker's partitions were being processed again;
- latency back to normal: the last outcome whose latency was above the highest latency
  of the load's emails answered before the kill (the warm-up email, which waited for the
  workers to start, left out), minus the kill time; after it every email is as fast as
  before;
- and no email lost or answered twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ops.bench.common import (
    Bench,
    percentile,
    processes,
    read_outcomes,
    sample_emails,
    settle,
)
from streams.commands.produce import produce_emails
from streams.engine.kafka import read_records
from topics import catalog


def run(bench: Bench) -> dict[str, Any]:
    rate, seconds, kill_at = (5.0, 12.0, 4.0) if bench.quick else (12.0, 90.0, 30.0)
    settings = bench.fresh("recovery")
    emails = sample_emails(int(rate * seconds), "load")
    with processes(bench.data_dir) as procs:
        victim = procs.worker(settings)
        procs.worker(settings)
        # Both workers in their groups first: one warm-up email answered.
        produce_emails(settings, sample_emails(1, "warm"))
        settle(settings, 1, 120)
        load = threading.Thread(
            target=produce_emails, args=(settings, emails), kwargs={"rate": rate}
        )
        began = time.time()
        load.start()
        time.sleep(max(0.0, began + kill_at - time.time()))  # the kill is scheduled, mid-load
        procs.kill(victim)
        killed_ms = time.time() * 1000
        load.join()
        settle(settings, len(emails) + 1, 300)
    found = read_outcomes(settings)
    partition_of = {
        (r.key or b"").decode(): r.partition for r in read_records(settings, catalog.INBOUND)
    }
    bench.retire(settings)
    first_after: dict[int, int] = {}
    for mid, produced in sorted(found.produced_ms.items(), key=lambda kv: kv[1]):
        p = partition_of[mid]
        if produced >= killed_ms and mid in found.final and p not in first_after:
            first_after[p] = found.final[mid][1]
    # The load's emails only: the warm-up email waited for the workers' start-up.
    before = [
        float(found.final[m][1] - t)
        for m, t in found.produced_ms.items()
        if m in found.final and t >= began * 1000 and found.final[m][1] < killed_ms
    ]
    worst_before = max(before)
    slow_after = [
        found.final[m][1]
        for m, t in found.produced_ms.items()
        if m in found.final
        and found.final[m][1] >= killed_ms
        and found.final[m][1] - t > worst_before
    ]
    return {
        "rate_per_s": rate,
        "emails": len(emails) + 1,
        "killed_after_s": kill_at,
        "partitions_back_s": (max(first_after.values()) - killed_ms) / 1000,
        "partitions_seen": len(first_after),
        "latency_normal_after_s": (max(slow_after) - killed_ms) / 1000 if slow_after else 0.0,
        "latency_before_ms": {"p50": percentile(before, 50), "max": worst_before},
        **found.counts(),
    }


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            f"2 workers at {r['rate_per_s']:.0f} emails/s, "
            f"SIGKILL one after {r['killed_after_s']:.0f}s",
            "",
            "",
        ),
        (
            f"  every inbound partition processed again ({r['partitions_seen']} partitions)",
            f"{r['partitions_back_s']:.1f} s after the kill",
            "",
        ),
        (
            f"  latency back under the pre-kill max ({r['latency_before_ms']['max']:.0f} ms)",
            f"{r['latency_normal_after_s']:.1f} s after the kill",
            "",
        ),
        (
            "  lost / duplicates / dead-lettered",
            f"{r['lost']}/{r['duplicates']}/{r['failed']}",
            f"of {r['emails']} emails",
        ),
    ]
