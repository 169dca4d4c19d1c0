"""``streamforge run sessions|revenue|fraud|all``: the Beam analytics jobs, locally or on Dataflow."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from streamforge.config import Config

__all__ = ["run", "print_report"]

_FILES = {"clickstream": "clickstream.jsonl", "orders": "orders.jsonl"}


class Job(str, Enum):
    sessions = "sessions"
    revenue = "revenue"
    fraud = "fraud"
    all = "all"


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
                            f"{' and '.join(_FILES.values())}), or --clickstream and --orders")
            directory = Path(input_url[len("file://"):])
            for stream in needed:
                given[stream] = given[stream] or f"file://{directory / _FILES[stream]}"
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
    job: Job = typer.Argument(..., help="sessions, revenue, fraud, or all (the three in one pipeline)."),
    input_url: Optional[str] = typer.Option(
        None, "--input", "-i", metavar="URL",
        help="file://PATH (batch), pubsub://projects/P/subscriptions/S or pubsub://projects/P/topics/T (streaming). "
             "For `all`: file://DIR holding clickstream.jsonl and orders.jsonl."),
    clickstream: Optional[str] = typer.Option(None, metavar="URL", help="Clickstream input (sessions, all)."),
    orders: Optional[str] = typer.Option(None, metavar="URL", help="Orders input (revenue, fraud, all)."),
    warehouse: str = typer.Option("duckdb://out/warehouse.duckdb", metavar="URL",
                                  help="bigquery://PROJECT.DATASET or duckdb:///PATH."),
    alerts_topic: Optional[str] = typer.Option(None, metavar="projects/P/topics/T",
                                               help="Also publish fraud alerts (JSON) to this Pub/Sub topic."),
    dead_letter_topic: Optional[str] = typer.Option(None, metavar="projects/P/topics/T",
                                                    help="Also publish dead letters (JSON) to this Pub/Sub topic."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
) -> None:
    """Run an analytics job. Options after the job that StreamForge does not know go to Beam
    (e.g. --runner DataflowRunner --project P --region R --temp_location gs://B/tmp).

    File inputs run in batch mode on the local runner; Pub/Sub inputs stream until Ctrl-C.
    """
    from beam_pipelines.common.io import SpecError, parse_input, parse_warehouse
    from beam_pipelines.jobs import JobRequest, run_job
    from streamforge.shutdown import stop_on_signals

    config: Config = ctx.obj
    urls = resolve_inputs(job.value, input_url, clickstream, orders)
    for name, topic in (("--alerts-topic", alerts_topic), ("--dead-letter-topic", dead_letter_topic)):
        if topic is not None and not (topic.startswith("projects/") and "/topics/" in topic):
            raise _fail(f"{name} {topic}: expected projects/PROJECT/topics/TOPIC")
    try:
        inputs = {stream: parse_input(url, f"--{stream}" if job.value == "all" else "--input") for stream, url in urls.items()}
        spec = parse_warehouse(warehouse)
        request = JobRequest(job.value, inputs, spec, config, alerts_topic, dead_letter_topic)
    except SpecError as exc:
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
