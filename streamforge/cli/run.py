"""``streamforge run sessions|revenue|fraud|all|cdc``: the Beam jobs, locally or on Dataflow."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from beam_pipelines.common.io import SpecError
from beam_pipelines.dataflow.control import ControlError, DataflowJobs
from beam_pipelines.local.feed import FeedCounts
from beam_pipelines.requests import analytics_request, cdc_request
from beam_pipelines.runner import JobReport, Submission, is_remote, pipeline_options
from beam_pipelines.runner import run as run_request
from streamforge.cli.dataflow import follow_job
from streamforge.config import Config
from streamforge.live.progress import write_job_progress
from streamforge.packaging import PackagingError
from streamforge.shutdown import stop_on_signals

__all__ = ["print_report", "run"]


class Job(str, Enum):
    sessions = "sessions"
    revenue = "revenue"
    fraud = "fraud"
    all = "all"
    cdc = "cdc"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def run(
    ctx: typer.Context,
    job: Job = typer.Argument(..., help="sessions, revenue, fraud, all (the three in one pipeline), or cdc."),
    input_url: Optional[str] = typer.Option(
        None,
        "--input",
        "-i",
        metavar="URL",
        help="file://PATH or gs://BUCKET/PATH (batch), kafka://HOST:PORT/TOPIC?until=end (batch, to the end offsets "
        "at start; options in docs/pipelines.md), pubsub://projects/P/subscriptions/S, "
        "pubsub://projects/P/topics/T or kafka://HOST:PORT/TOPIC (streaming). For `all`: a directory (file://DIR or gs://BUCKET/DIR) holding "
        "clickstream.jsonl and orders.jsonl, or kafka://HOST:PORT[?until=end] (the topics from config). For `cdc`: file://DIR or gs://BUCKET/DIR of `cdc run`'s files, "
        "pubsub://projects/P/subscriptions/NAME with {table} in NAME, or kafka://HOST:PORT[?until=end].",
    ),
    clickstream: Optional[str] = typer.Option(None, metavar="URL", help="Clickstream input (sessions, all)."),
    orders: Optional[str] = typer.Option(None, metavar="URL", help="Orders input (revenue, fraud, all)."),
    warehouse: str = typer.Option(
        "duckdb://out/warehouse.duckdb",
        metavar="URL",
        help="bigquery://PROJECT.DATASET or duckdb:///PATH (local runs only).",
    ),
    alerts_topic: Optional[str] = typer.Option(
        None, metavar="projects/P/topics/T", help="Also publish fraud alerts (JSON) to this Pub/Sub topic."
    ),
    dead_letter_topic: Optional[str] = typer.Option(
        None, metavar="projects/P/topics/T", help="Also publish dead letters (JSON) to this Pub/Sub topic."
    ),
    catalog: Optional[str] = typer.Option(
        None,
        metavar="URL",
        help="revenue, all: the products change stream from CDC (file://DIR or gs://BUCKET/DIR of "
        "`cdc run` files, or pubsub://projects/P/subscriptions/S); revenue by category then "
        "uses the database's categories.",
    ),
    raw_events: bool = typer.Option(
        False,
        "--raw-events",
        help="Also write every valid, deduplicated event to clickstream_events and "
        "order_events (what the daily batch reads).",
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="On Dataflow: follow the submitted job (state and counters) until it ends; Ctrl-C "
        "stops following and leaves the job running.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary table."),
    progress_file: Optional[Path] = typer.Option(
        None,
        metavar="PATH",
        help="Local streaming: keep the feed's counts by input (JSON: pulled, acknowledged, "
        "duplicates, watermark) in this file, rewritten every half second.",
    ),
) -> None:
    """Run a job. Options after the job that StreamForge does not know go to Beam
    (e.g. --runner DataflowRunner --project P --region R --temp_location gs://B/tmp).

    Locally, file inputs run in batch mode and Pub/Sub inputs stream until Ctrl-C. On Dataflow
    the job is submitted as streamforge-JOB (--job_name to change it; --update replaces the
    running job of that name) and the command returns: `streamforge dataflow watch|drain|cancel`
    follow and stop it.
    """
    config: Config = ctx.obj
    try:
        if job is Job.cdc:
            if catalog is not None:
                raise SpecError("--catalog is for the revenue job (and all)")
            request = cdc_request(config, input_url=input_url, warehouse=warehouse)
        else:
            request = analytics_request(
                job.value,
                config,
                warehouse=warehouse,
                input_url=input_url,
                clickstream=clickstream,
                orders=orders,
                alerts_topic=alerts_topic,
                dead_letter_topic=dead_letter_topic,
                catalog=catalog,
                raw_events=raw_events,
            )
    except (SpecError, ValueError) as exc:
        raise _fail(str(exc)) from None
    options = pipeline_options(request, ctx.args)
    remote = is_remote(options)
    if request.warehouse.kind == "duckdb" and not remote:
        Path(request.warehouse.path).parent.mkdir(parents=True, exist_ok=True)
    err = Console(stderr=True)
    if not quiet and not remote:
        mode = "streaming until Ctrl-C" if request.streaming else "batch"
        err.print(f"running {job.value} ({mode}) -> {request.warehouse}")
    try:
        with stop_on_signals() as stop:
            outcome = run_request(
                request,
                options,
                should_stop=stop,
                on_progress=None if progress_file is None else partial(_write_progress, progress_file),
            )
    except (SpecError, PackagingError) as exc:
        raise _fail(str(exc)) from None
    if isinstance(outcome, Submission):
        _print_submission(outcome, err)
        if wait and outcome.job_id is not None:
            try:
                follow_job(DataflowJobs(outcome.project, outcome.region), outcome.job_id, err)
            except ControlError as exc:
                raise _fail(str(exc)) from None
        return
    if not quiet:
        (print_cdc_report if job is Job.cdc else print_report)(outcome, Console())


def _write_progress(path: Path, counts: dict[str, FeedCounts]) -> None:
    write_job_progress(path, {input_path: asdict(c) for input_path, c in counts.items()})


def _print_submission(submission: Submission, console: Console) -> None:
    mode = "streaming" if submission.streaming else "batch"
    if submission.template_location:  # a classic template: `gcloud dataflow jobs run --gcs-location` starts it
        console.print(f"{submission.name} ({mode}) written to {submission.template_location}; nothing submitted")
        return
    if submission.job_id is None:
        steps = len(submission.job.proto_pipeline.components.transforms) if submission.job is not None else 0
        console.print(f"dry run: {submission.name} ({mode}) built, {steps} transforms; nothing submitted")
        return
    where = f"--project {submission.project} --region {submission.region}"
    console.print(
        f"submitted {submission.name} ({mode}) to Dataflow: job {submission.job_id}\n"
        f"  console: {submission.console_url}\n"
        f"  follow:  streamforge dataflow watch {submission.job_id} {where}\n"
        f"  stop:    streamforge dataflow {'drain' if submission.streaming else 'cancel'} "
        f"{submission.job_id} {where}",
        soft_wrap=True,
    )


def print_report(report: JobReport, console: Console) -> None:
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


def print_cdc_report(report: JobReport, console: Console) -> None:
    """The CDC job's counters: read = changes + tombstones + heartbeats + dead-lettered."""
    c = report.counters.get("cdc", {})
    table = Table(title=f"CDC run {report.state.lower().replace('pipelinestate.', '')}")
    columns = {
        "read": "read",
        "changes": "changes",
        "duplicates": "redelivered",
        "tombstones": "tombstones",
        "heartbeats": "heartbeats",
        "dead_lettered": "dead-lettered",
        "replica_applied": "applied",
        "replica_stale": "stale (replays)",
    }
    if "replica_appended" in c:  # BigQuery: every change appended, the <table>_current views pick the latest
        del columns["replica_applied"], columns["replica_stale"]
        columns["replica_appended"] = "appended (views pick the latest)"
    for title in columns.values():
        table.add_column(title, justify="right")
    table.add_row(*(f"{c.get(k, 0):,}" for k in columns))
    console.print(table)
