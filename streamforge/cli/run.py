"""``streamforge run sessions|revenue|fraud|all``: the Beam analytics jobs, locally or on Dataflow."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from streamforge.config import Config
from streamforge.transport import STREAM_FILES

__all__ = ["run", "print_report"]



class Job(str, Enum):
    sessions = "sessions"
    revenue = "revenue"
    fraud = "fraud"
    all = "all"
    cdc = "cdc"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def resolve_inputs(job: str, input_url: Optional[str], clickstream: Optional[str], orders: Optional[str]) -> dict[str, str]:
    """Stream name -> input URL for ``job`` from --input / --clickstream / --orders."""
    from beam_pipelines.jobs import STREAMS

    given = {"clickstream": clickstream, "orders": orders}
    needed = STREAMS[job]
    if input_url is not None:
        if job == "all":
            if not input_url.startswith("file://") or not Path(input_url[len("file://"):]).is_dir():
                raise _fail(f"--input {input_url}: for `run all` give a directory (file://DIR holding "
                            f"{' and '.join(STREAM_FILES.values())}), or --clickstream and --orders")
            directory = Path(input_url[len("file://"):])
            for stream in needed:
                given[stream] = given[stream] or f"file://{directory / STREAM_FILES[stream]}"
        else:
            (stream,) = needed
            if given[stream] is not None:
                raise _fail(f"give either --input or --{stream}, not both")
            given[stream] = input_url
    missing = [s for s in needed if given[s] is None]
    if missing:
        raise _fail(f"`run {job}` needs --input" + ("" if job != "all" else " DIR") +
                    f" (or {' and '.join('--' + s for s in missing)})")
    return {s: given[s] for s in needed}


def run(
    ctx: typer.Context,
    job: Job = typer.Argument(..., help="sessions, revenue, fraud, all (the three in one pipeline), or cdc."),
    input_url: Optional[str] = typer.Option(
        None, "--input", "-i", metavar="URL",
        help="file://PATH (batch), pubsub://projects/P/subscriptions/S or pubsub://projects/P/topics/T (streaming). "
             "For `all`: file://DIR holding clickstream.jsonl and orders.jsonl. For `cdc`: file://DIR of "
             "`cdc run`'s files, or pubsub://projects/P/subscriptions/NAME with {table} in NAME."),
    clickstream: Optional[str] = typer.Option(None, metavar="URL", help="Clickstream input (sessions, all)."),
    orders: Optional[str] = typer.Option(None, metavar="URL", help="Orders input (revenue, fraud, all)."),
    warehouse: str = typer.Option("duckdb://out/warehouse.duckdb", metavar="URL",
                                  help="bigquery://PROJECT.DATASET or duckdb:///PATH."),
    alerts_topic: Optional[str] = typer.Option(None, metavar="projects/P/topics/T",
                                               help="Also publish fraud alerts (JSON) to this Pub/Sub topic."),
    dead_letter_topic: Optional[str] = typer.Option(None, metavar="projects/P/topics/T",
                                                    help="Also publish dead letters (JSON) to this Pub/Sub topic."),
    catalog: Optional[str] = typer.Option(
        None, metavar="URL", help="revenue, all: the products change stream from CDC (file://DIR of `cdc run` files, "
                                  "or pubsub://projects/P/subscriptions/S); revenue by category then uses the "
                                  "database's categories."),
    raw_events: bool = typer.Option(False, "--raw-events",
                                    help="Also write every valid, deduplicated event to clickstream_events and "
                                         "order_events (what the daily batch reads)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
) -> None:
    """Run an analytics job. Options after the job that StreamForge does not know go to Beam
    (e.g. --runner DataflowRunner --project P --region R --temp_location gs://B/tmp).

    File inputs run in batch mode on the local runner; Pub/Sub inputs stream until Ctrl-C.
    """
    from beam_pipelines.common.io import parse_input, parse_warehouse
    from beam_pipelines.jobs import JobRequest, run_job
    from streamforge.shutdown import stop_on_signals

    config: Config = ctx.obj
    if job is Job.cdc:
        if catalog is not None:
            raise _fail("--catalog is for the revenue job (and all)")
        return run_cdc(ctx, input_url, warehouse, quiet)
    urls = resolve_inputs(job.value, input_url, clickstream, orders)
    for name, topic in (("--alerts-topic", alerts_topic), ("--dead-letter-topic", dead_letter_topic)):
        if topic is not None and not (topic.startswith("projects/") and "/topics/" in topic):
            raise _fail(f"{name} {topic}: expected projects/PROJECT/topics/TOPIC")
    try:
        inputs = {stream: parse_input(url, f"--{stream}" if job.value == "all" else "--input") for stream, url in urls.items()}
        spec = parse_warehouse(warehouse)
        request = JobRequest(job.value, inputs, spec, config, alerts_topic, dead_letter_topic,
                             _catalog_input(catalog) if catalog else None, raw_events)
    except ValueError as exc:  # SpecError, or the Debezium config (--catalog)
        raise _fail(str(exc)) from None
    if spec.kind == "duckdb":
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    if not quiet:
        mode = "streaming until Ctrl-C" if request.streaming else "batch"
        console.print(f"running {job.value} ({mode}) -> {spec}")
    with stop_on_signals() as stop:
        report = run_job(request, ctx.args, should_stop=stop)
    if not quiet:
        print_report(report, Console())


def _catalog_input(url: str):
    from beam_pipelines.cdc.pipeline import parse_cdc_input
    from streamforge.cdc.config import DebeziumServerConfig

    return parse_cdc_input(url, {"products": DebeziumServerConfig.load().topic("public.products")})


def run_cdc(ctx: typer.Context, input_url: Optional[str], warehouse: str, quiet: bool) -> None:
    """``run cdc``: change events -> changelogs, replicas and business events (beam_pipelines/cdc)."""
    from beam_pipelines.cdc.pipeline import CdcJob, parse_cdc_input
    from beam_pipelines.cdc.tables import load_source_tables
    from beam_pipelines.common.io import SpecError, parse_warehouse
    from beam_pipelines.jobs import run_pipeline
    from streamforge.cdc.config import ConfigError, DebeziumServerConfig
    from streamforge.shutdown import stop_on_signals

    config: Config = ctx.obj
    if input_url is None:
        raise _fail("`run cdc` needs --input (file://DIR of `cdc run` files, or pubsub://.../subscriptions/...{table})")
    try:
        debezium = DebeziumServerConfig.load()
        tables = load_source_tables()
        captured = {qualified.split(".", 1)[-1]: debezium.topic(qualified) for qualified in debezium.tables}
        unknown = sorted(set(captured) - set(tables))
        if unknown:
            raise SpecError(f"{debezium.path} captures {', '.join(unknown)}, which cdc/schema.sql does not define")
        source = parse_cdc_input(input_url, captured)
        spec = parse_warehouse(warehouse)
    except (SpecError, ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if spec.kind == "duckdb":
        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
    job = CdcJob(source, spec, {t: tables[t] for t in captured}, config.cdc.replicas, config.cdc.low_stock_threshold)
    console = Console(stderr=True)
    if not quiet:
        mode = "batch" if source.bounded else "streaming until Ctrl-C"
        console.print(f"running cdc ({mode}) over {', '.join(t for t, _ in source.sources)} -> {spec}")
    with stop_on_signals() as stop:
        report = run_pipeline(lambda pipeline: pipeline | "CDC" >> job, not source.bounded, ctx.args, should_stop=stop)
    if not quiet:
        c = report.counters.get("cdc", {})
        table = Table(title=f"CDC run {report.state.lower().replace('pipelinestate.', '')}")
        for column in ("read", "changes", "tombstones", "heartbeats", "dead-lettered", "applied", "stale (replays)"):
            table.add_column(column, justify="right")
        table.add_row(*(f"{c.get(k, 0):,}" for k in ("read", "changes", "tombstones", "heartbeats", "dead_lettered",
                                                    "replica_applied", "replica_stale")))
        Console().print(table)


def print_report(report, console: Console) -> None:
    """The counters of a run, and the check that every message is accounted for."""
    table = Table(title=f"Run {report.state.lower().replace('pipelinestate.', '')}")
    for column in ("input", "read", "events", "dead-lettered", "duplicates"):
        table.add_column(column, justify="right" if column != "input" else "left")
    for stream in ("clickstream", "orders"):
        if stream in report.counters:
            read, unique, dead, dupes = report.accounting(stream)
            table.add_row(stream, f"{read:,}", f"{unique:,}", f"{dead:,}", f"{dupes:,}")
    console.print(table)
    outputs = Table(title="Job outputs")
    for column in ("job", "events in", "rows out", "late (dead-lettered)"):
        outputs.add_column(column, justify="right" if column != "job" else "left")
    for job in ("sessions", "revenue", "fraud"):
        c = report.counters.get(job)
        if c:
            outputs.add_row(job, f"{c.get('events', 0):,}", f"{c.get('emitted', 0):,}", f"{c.get('late', 0):,}")
    console.print(outputs)
