"""The ``mailroom`` command line."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streams.commands.cluster import broker_app
from streams.commands.kb import kb_app
from streams.settings import Settings
from topics.errors import MailroomError

app = typer.Typer(
    help="mailroom: AI orchestration for customer feedback email, on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(help="The topics of the pipeline.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
models_app = typer.Typer(help="The models: local ones and LLM endpoints.", no_args_is_help=True)
app.add_typer(models_app, name="models")
dlq_app = typer.Typer(help="The dead-letter topics.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(kb_app, name="kb")

console = Console()
err = Console(stderr=True)


def settings() -> Settings:
    """The settings, and the route topics of their taxonomy."""
    from streams.commands.environment import check_faults
    from topics import catalog

    chosen = Settings()
    check_faults(chosen)
    catalog.configure_routes(chosen.taxonomy.routes)
    _warn_of_unknown_variables()
    return chosen


@functools.cache
def _warn_of_unknown_variables() -> None:
    from streams.commands.environment import unknown_variables

    for warning in unknown_variables():
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def kafka_settings() -> Settings:
    """The settings, once Kafka has answered with them (else a one-line reason, exit 2)."""
    from streams.engine.kafka import check_connection

    chosen = settings()
    check_connection(chosen)
    return chosen


# -- topics -----------------------------------------------------------------------------
@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the catalog, retry and DLQ topics included (idempotent)."""
    from streams.commands.admin import create_topics

    result = create_topics(kafka_settings())
    console.print(f"created {len(result.created)} topics, {len(result.existing)} already existed")
    for name in result.created:
        console.print(f"  + {name}")
    for difference in result.differences:
        err.print(f"differs: {difference}", highlight=False)
    if result.differences:
        raise typer.Exit(1)


@topics_app.command("list")
def topics_list() -> None:
    """List the topics with partitions and record counts."""
    from streams.commands.admin import list_topics

    infos = list_topics(kafka_settings())
    differs = any(info.differs for info in infos)
    table = Table("topic", "partitions", "replicas", "records", "catalog")
    table.columns[0].no_wrap = True
    if differs:
        table.add_column("differs from the catalog")
    for info in infos:
        row = [info.name, str(info.partitions), str(info.replication), str(info.records)]
        row.append("yes" if info.in_catalog else "")
        table.add_row(*row, *([info.differs] if differs else []))
    console.print(table)


# -- models -----------------------------------------------------------------------------
@models_app.command("train")
def models_train(
    data: Annotated[Path | None, typer.Option(help="CSV or JSON lines of labelled tickets")] = None,
    text: Annotated[str, typer.Option(help="the text column(s), e.g. subject,body")] = "text",
    label: Annotated[str, typer.Option(help="the column with the label")] = "category",
    taxonomy_out: Annotated[
        Path | None, typer.Option(help="write a categories section for the label set")
    ] = None,
    force: Annotated[bool, typer.Option(help="retrain even if the artifact exists")] = False,
) -> None:
    """Train a classifier on your labelled tickets (--data), or the bundled one."""
    from streams.models import trained as models

    began = time.monotonic()
    if data is None:
        from streams.models.local import train_classifier

        path, fitted = train_classifier(settings().data_dir, force=force)
        word = f"trained in {time.monotonic() - began:.1f}s" if fitted else "up to date"
        console.print(f"classifier {word}: {path}")
        return
    from streams.taxonomy import categories_section

    pairs = models.read_rows(data, text, label)
    if taxonomy_out is not None:  # a label that cannot name a category, before training
        categories_section(sorted({y for _, y in pairs}))
    model, fitted = models.train(settings().data_dir, pairs, force=force)
    word = f"trained in {time.monotonic() - began:.1f}s" if fitted else "up to date"
    console.print(f"model {model.id} {word}: {model.rows} rows, {len(model.labels)} labels")
    if taxonomy_out is not None:
        taxonomy_out.write_text(categories_section(model.labels), encoding="utf-8")
        console.print(f"categories section for {len(model.labels)} labels: {taxonomy_out}")


@models_app.command("eval")
def models_eval(
    data: Annotated[Path, typer.Option(help="CSV or JSON lines of labelled tickets")],
    text: Annotated[str, typer.Option(help="the text column(s), e.g. subject,body")] = "text",
    label: Annotated[str, typer.Option(help="the column with the label")] = "category",
    model: Annotated[str | None, typer.Option(help="model id; default: trained last")] = None,
    floor: Annotated[float, typer.Option(help="confidence floor for automation")] = 0.8,
    as_json: Annotated[Path | None, typer.Option("--json", help="write the figures")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG: confusion matrix, reliability")] = None,
) -> None:
    """Evaluate a trained classifier on labelled tickets it has not seen."""
    import json

    from streams.commands.models import print_evaluation
    from streams.models import trained as models

    chosen = models.load(settings().data_dir, model)
    evaluation = models.evaluate(chosen, models.read_rows(data, text, label), floor)
    print_evaluation(console, chosen.id, evaluation)
    if as_json is not None:
        as_json.write_text(json.dumps(evaluation.as_json(), indent=1))
    if plot is not None:
        models.plot(evaluation, plot)


@models_app.command("list")
def models_list() -> None:
    """Each model stage's chain of backends: endpoint, model, prices, breaker state."""
    from streams.commands.models import chains

    table = Table("stage", "#", "backend", "model", "where", "prices", "breaker")
    for row in chains(settings()):
        table.add_row(
            row.stage, str(row.position), row.backend, row.model, row.where, row.prices, row.breaker
        )
    console.print(table)


# -- pipeline ---------------------------------------------------------------------------
@app.command("worker")
def worker(
    stages: Annotated[str, typer.Option(help="comma-separated stages; default all")] = "",
) -> None:
    """Run stages (all, or a subset) in this process; more processes share the partitions."""
    import asyncio

    from streams.worker import run_worker
    from topics import catalog

    chosen = [s.strip() for s in stages.split(",") if s.strip()] or list(catalog.STAGE_NAMES)
    for name in chosen:
        catalog.stage(name)  # unknown names fail before anything starts
    from streams.telemetry.logs import setup_logging

    setup_logging(
        payloads=settings().log_payloads, level=logging.getLevelName(settings().log_level.upper())
    )
    asyncio.run(run_worker(kafka_settings(), chosen))


@app.command("produce")
def produce(
    paths: Annotated[list[Path], typer.Argument(help=".eml, .mbox, .jsonl, .csv or folders")],
    rate: Annotated[float, typer.Option(help="emails per second; 0 = as fast as possible")] = 0,
) -> None:
    """Produce emails from files to emails.inbound (Avro, keyed by message id)."""
    from rich.progress import Progress

    from streams.commands.produce import produce_emails, read_paths
    from streams.telemetry.tracing import setup_tracing, shutdown_tracing

    setup_tracing("mailroom-cli", settings().data_dir, enabled=settings().tracing)

    with Progress(console=err) as progress:
        ids = produce_emails(
            kafka_settings(), read_paths(paths), rate=rate or None, progress=progress
        )
    shutdown_tracing()
    console.print(f"produced {len(ids)} emails to {settings().topic('emails.inbound')}")


@app.command("consume")
def consume(
    topic: Annotated[str, typer.Argument(help="a catalog topic, e.g. responses")],
    follow: Annotated[bool, typer.Option(help="keep waiting for new records")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    limit: Annotated[int, typer.Option(help="stop after this many records; 0 = no limit")] = 0,
) -> None:
    """Print the records of a topic, decoded (pretty by default)."""
    from streams.commands.consume import consume_topic

    consume_topic(
        kafka_settings(), topic, follow=follow, as_json=as_json, limit=limit, console=console
    )


@app.command("audit")
def audit() -> None:
    """Check the ledger: every inbound message id is in exactly one terminal topic."""
    from streams.commands.audit import run_audit

    report = run_audit(kafka_settings())
    console.print(report.describe(), markup=False)  # message ids are a sender's text
    if report.missing or report.duplicated:
        raise typer.Exit(1)


@app.command("trace")
def trace_cmd(
    ident: Annotated[str, typer.Argument(help="a message id or a trace id")],
    jaeger: Annotated[
        str | None,
        typer.Option(help="Jaeger query URL, e.g. http://127.0.0.1:16686; default: span files"),
    ] = None,
) -> None:
    """Print an email's trace: every hop, model call, retry, with durations and outcomes."""
    from streams.commands.traceview import load_spans, render

    spans = load_spans(settings().data_dir, ident, jaeger=jaeger)
    if not spans:
        err.print(f"no spans found for {escape(ident)}")
        raise typer.Exit(1)
    console.print(render(spans, jaeger_ui=jaeger or settings().jaeger_ui))


@app.command("replay")
def replay_cmd(
    source: Annotated[str, typer.Argument(help="topic to read, e.g. classify.dlq")],
    to: Annotated[
        str | None, typer.Option(help="destination; default: each record's origin")
    ] = None,
    from_offset: Annotated[int | None, typer.Option(help="first offset, every partition")] = None,
    to_offset: Annotated[int | None, typer.Option(help="last offset (inclusive)")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO-8601 time (UTC if no zone) or epoch ms")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="ISO-8601 time (UTC if no zone) or epoch ms")
    ] = None,
    where: Annotated[list[str] | None, typer.Option(help="HEADER=VALUE filter, repeatable")] = None,
    dry_run: Annotated[bool, typer.Option(help="say what would be sent, send nothing")] = False,
    rate: Annotated[float, typer.Option(help="records per second; 0 = no limit")] = 0,
) -> None:
    """Re-publish dead letters to where they failed (or any topic to --to)."""
    from rich.progress import Progress

    from streams.commands.replay import ReplayPlan, parse_time, parse_where, replay

    plan = ReplayPlan(
        source=source,
        to=to,
        from_offset=from_offset,
        to_offset=to_offset,
        since_ms=parse_time(since) if since else None,
        until_ms=parse_time(until) if until else None,
        where=parse_where(where or []),
        dry_run=dry_run,
        rate=rate or None,
    )
    with Progress(console=err) as progress:
        task = progress.add_task(f"replaying {source}", total=None)
        result = replay(
            kafka_settings(),
            plan,
            lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(result.describe(dry_run), markup=False)


@dlq_app.command("list")
def dlq_list() -> None:
    """Dead letters by stage and error class."""
    from streams.commands.dlq import dlq_counts

    table = Table("stage", "error class", "dead letters")
    for (stage, error), count in sorted(dlq_counts(kafka_settings()).items()):
        table.add_row(escape(stage), escape(error), str(count))  # headers anyone may set
    console.print(table)


@dlq_app.command("show")
def dlq_show(
    stage: Annotated[str | None, typer.Argument(help="one stage; default all")] = None,
    limit: Annotated[int, typer.Option(help="at most this many records")] = 20,
    show_bodies: Annotated[bool, typer.Option(help="print values (may hold PII)")] = False,
) -> None:
    """Dead-letter records with their headers; bodies redacted unless asked."""
    import json

    from streams.commands.dlq import dlq_records

    for record in dlq_records(kafka_settings(), stage, show_bodies=show_bodies, limit=limit):
        console.print_json(json.dumps(record))


@app.command("demo")
def demo(
    faults: Annotated[str, typer.Option(help='e.g. "classify:error_rate=0.12"')] = "",
    llm: Annotated[
        bool, typer.Option(help="every model stage on the local SmolLM2 server (make llm)")
    ] = False,
    count: Annotated[int, typer.Option(help="emails to send; default 200, 6 with --llm")] = 0,
) -> None:
    """Start what is not running, run a worker on the sample emails, summarize, stop."""
    from streams.commands.demo import run_demo

    run_demo(settings(), console, faults=faults, llm=llm, count=count)


llm_app = typer.Typer(
    help="The local LLM server (SmolLM2-135M on llama.cpp).", no_args_is_help=True
)
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8089,
) -> None:
    """Run the local LLM server until Ctrl-C; print the settings that point mailroom at it."""
    import signal as signals

    from streams.commands.llm import LocalLLM

    server = LocalLLM(settings().data_dir / "llm-server.log", port=port)
    with console.status("starting SmolLM2-135M on llama.cpp's server"):
        server.start()
    console.print(f"OpenAI-compatible server on {server.base_url} (log {server.log_file})")
    for name, value in server.env().items():
        console.print(f"export {name}='{value}'")
    stopping = {signals.SIGINT, signals.SIGTERM}
    signals.pthread_sigmask(signals.SIG_BLOCK, stopping)
    try:
        signals.sigwait(stopping)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: mailroom errors print one clear line, exit code 2."""
    from streams.telemetry.logs import setup_cli_logging

    setup_cli_logging()  # `worker` switches to JSON lines
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        app(args=argv, standalone_mode=True)
    except MailroomError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except (SettingsError, ValidationError) as exc:  # a MAILROOM_* variable that cannot be used
        from streams.commands.environment import problems

        for problem in problems(exc):
            err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
