"""``python -m ops.chaos``: see ``ops.chaos``. Exits 1 when an email was lost, answered
twice or given a wrong outcome, or the longest stall passed the bar."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ops.chaos import Chaos, Plan

app = typer.Typer(add_completion=False)


@app.command()
def main(
    emails: Annotated[int, typer.Option(min=1)] = Plan.emails,
    workers: Annotated[int, typer.Option(min=1, max=12)] = Plan.workers,
    nodes: Annotated[int, typer.Option(min=1, max=5)] = Plan.nodes,
    kill_every: Annotated[float, typer.Option(min=1.0, help="seconds between worker kills")] = (
        Plan.kill_every_s
    ),
    kills: Annotated[int, typer.Option(min=0, help="at least this many worker kills")] = (
        Plan.min_kills
    ),
    broker_down: Annotated[float, typer.Option(help="seconds the killed node stays down")] = (
        Plan.broker_down_s
    ),
    rate: Annotated[float, typer.Option(help="emails produced per second")] = 10.0,
    warmup: Annotated[
        int, typer.Option(min=0, help="emails whose outcomes are waited for before the clock")
    ] = Plan.warmup,
    stall_bar: Annotated[float, typer.Option(help="longest stall allowed, seconds")] = 5.0,
    data_dir: Annotated[Path | None, typer.Option(help="default: a temporary folder")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    plan = Plan(
        emails=emails,
        workers=workers,
        nodes=nodes,
        kill_every_s=kill_every,
        min_kills=kills,
        broker_down_s=broker_down,
        rate=rate,
        warmup=warmup,
    )
    logging.getLogger("mailroom").setLevel(
        logging.ERROR
    )  # the clients' retries while a node is down
    console = Console()
    with tempfile.TemporaryDirectory(prefix="mailroom-chaos-") as scratch:
        report = Chaos(plan, data_dir or Path(scratch), say=console.print).run()
    table = Table(title="mailroom chaos")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in report.rows():
        table.add_row(name, value)
    console.print(table)
    for what, ids in (("lost", report.lost), ("duplicated", list(report.duplicated))):
        if ids:
            console.print(f"{what}: {', '.join(ids[:20])}")
    if report.wrong:
        console.print(f"wrong: {', '.join(report.wrong[:20])}")
    if json_out:
        json_out.write_text(json.dumps(asdict(report), indent=2))
    ok = report.ok(stall_bar)
    console.print(
        "PASS" if ok else f"FAIL (bars: 0 lost, 0 duplicated, 0 wrong, stall <= {stall_bar}s)"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    app()
