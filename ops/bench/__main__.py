"""``make bench``: every scenario on one embedded broker, one table, one JSON file.

    .venv/bin/python -m ops.bench [--quick] [--only limit,hop,...] [--json PATH]

Every ratio in the table is computed from two measurements of the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ops.bench import hop, limit, parts, pipeline, recovery, slow
from ops.bench.common import ROOT, Bench

Row = tuple[str, str, str]
SCENARIOS: dict[str, tuple[str, Callable[[Bench], dict[str, Any]], Callable[..., list[Row]]]] = {
    "limit": ("1. the limit", limit.run, limit.rows),
    "hop": ("2. one stage hop", hop.run, hop.rows),
    "pipeline": ("3. whole pipeline", pipeline.run, pipeline.rows),
    "slow": ("4. slow, failing models", slow.run, slow.rows),
    "parts": ("5. costs of parts", parts.run, parts.rows),
    "recovery": ("6. recovery", recovery.run, recovery.rows),
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench")
    parser.add_argument("--quick", action="store_true", help="small sizes: keeps CI under 2 min")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "results.json")
    parser.add_argument("--show", type=Path, help="print the table of an earlier run's JSON")
    parser.add_argument("--width", type=int, default=160, help="the table's width")
    args = parser.parse_args()
    if args.show:
        shown = json.loads(args.show.read_text())
        table = render(shown, list(shown["scenarios"]), shown["quick"])
        Console(width=args.width).print(table)
        return 0
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # rebalance chatter, not results
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    console = Console(width=args.width)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scenarios": {},
    }
    failed = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp:
        bench = Bench(Path(tmp), quick=args.quick)
        bench.start()
        results["broker_start_s"] = bench.started_s
        try:
            for name in chosen:
                title = SCENARIOS[name][0]
                console.print(f"[bold]{title}[/bold] ...")
                t0 = time.monotonic()
                try:
                    results["scenarios"][name] = SCENARIOS[name][1](bench)
                except Exception:
                    failed.append(name)
                    console.print(traceback.format_exc())
                    continue
                results["scenarios"][name]["seconds"] = time.monotonic() - t0
                console.print(f"  done in {time.monotonic() - t0:.1f}s")
        finally:
            bench.stop()
    results["seconds"] = time.monotonic() - began
    table = render(results, chosen, args.quick)
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"JSON: {args.json}; {results['seconds']:.0f}s in all")
    if failed:
        console.print(f"[red]failed scenarios: {', '.join(failed)}[/red]")
        return 1
    return 0


def render(results: dict[str, Any], chosen: list[str], quick: bool) -> Table:
    table = Table(
        title=f"mailroom bench ({'quick' if quick else 'full'}), "
        f"{results['machine']['cpus']} CPUs, one embedded Kafka broker"
    )
    table.add_column("scenario", no_wrap=True)
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("ratio (same run)", justify="right", no_wrap=True)
    for name in chosen:
        if name not in results["scenarios"]:
            table.add_row(SCENARIOS[name][0], "FAILED", "", "")
            continue
        for n, (measure, value, ratio) in enumerate(SCENARIOS[name][2](results["scenarios"][name])):
            table.add_row(SCENARIOS[name][0] if n == 0 else "", measure, value, ratio)
        table.add_section()
    return table


if __name__ == "__main__":
    sys.exit(main())
