"""``streamforge batch daily|reconcile|package|class-archive``: the daily PySpark batch on local Spark (127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from batch.daily_metrics import JobError, parse_dates, reconcile_written, run
from batch.local_jvm import ArchiveError, record_archive
from batch.packaging import DATAPROC_RUNTIME
from batch.packaging import package as build
from batch.spark import local_session

__all__ = ["app"]

app = typer.Typer(
    help="The daily batch: business metrics per day with PySpark (locally here, Dataproc Serverless on GCP).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_DATE_HELP = "A UTC day, YYYY-MM-DD, or a range YYYY-MM-DD..YYYY-MM-DD (inclusive)."
_MISMATCH_EXIT = 3


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _dates(text: str):
    try:
        return parse_dates(text)
    except JobError as exc:
        raise _fail(str(exc)) from None


def _run_and_show(job, as_json: bool) -> None:
    """Runs ``job()`` (a DailyRun), prints it; exit 2 on a bad argument, 3 on a reconciliation mismatch."""
    try:
        report = job()
    except JobError as exc:
        raise _fail(str(exc)) from None
    _show(report, as_json)
    if report.mismatched:
        raise typer.Exit(_MISMATCH_EXIT)


def _show(report, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.summary(), indent=2))
        return
    console = Console()
    if report.counts:
        table = Table(
            title=f"Events of {report.dates[0]}" + (f" .. {report.dates[-1]}" if len(report.dates) > 1 else "")
        )
        for column in ("stream", "input", "valid", "rejected", "duplicates"):
            table.add_column(column, justify="left" if column == "stream" else "right")
        for stream, c in report.counts.items():
            table.add_row(stream, *(f"{c[k]:,}" for k in ("input", "valid", "rejected", "duplicates")))
        console.print(table)
    written = Table(title="Rows written (for these dates)")
    written.add_column("table")
    written.add_column("rows", justify="right")
    for name, rows in report.rows_written.items():
        written.add_row(name, f"{rows:,}")
    console.print(written)
    if report.reconciliation:
        recon = Table(title="Reconciliation with the streaming revenue_per_minute")
        recon.add_column("")
        for row in report.reconciliation:
            recon.add_column(row["date"], justify="right")
        for field in (
            "batch_gmv",
            "streaming_gmv",
            "difference",
            "batch_orders",
            "streaming_orders",
            "late_orders",
            "late_gmv",
            "dead_lettered_orders",
            "unexplained",
            "status",
        ):
            recon.add_row(
                field,
                *(
                    f"{row[field]:,}" if isinstance(row[field], int) else str(row[field])
                    for row in report.reconciliation
                ),
            )
        console.print(recon)
    console.print(f"{report.seconds:.1f} s", highlight=False)


@app.command("daily")
def daily(
    ctx: typer.Context,
    date: str = typer.Option(..., "--date", metavar="YYYY-MM-DD[..YYYY-MM-DD]", help=_DATE_HELP),
    input_url: str = typer.Option(
        ...,
        "--input",
        "-i",
        metavar="URL",
        help="file://DIR (the simulator's JSONL files), parquet://DIR, duckdb://FILE "
        "(a warehouse run with --raw-events) or bigquery://PROJECT.DATASET.",
    ),
    output: str = typer.Option(
        "file://out/batch",
        "--output",
        "-o",
        metavar="URL",
        help="file://DIR (Parquet per table and DIR/batch.duckdb) or bigquery://PROJECT.DATASET.",
    ),
    reconcile_with: Optional[str] = typer.Option(
        None,
        metavar="URL",
        help="The pipelines' warehouse (duckdb://FILE): compare the day's "
        "revenue with its revenue_per_minute; exit 3 on a mismatch.",
    ),
    cores: str = typer.Option("*", metavar="N", help="Local Spark cores: local[N]."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's summary as JSON."),
) -> None:
    """Compute daily_revenue, daily_revenue_by_category, daily_top_regions, daily_conversion_funnel
    and daily_order_status for the dates, replacing those dates (and only those) in the output;
    rows that fail the event schemas go to batch_rejects with the reason."""
    dates = _dates(date)
    _run_and_show(
        lambda: run(
            local_session(cores=cores), dates, input_url, output, reconcile_with=reconcile_with, config=ctx.obj
        ),
        as_json,
    )


@app.command("reconcile")
def reconcile(
    date: str = typer.Option(..., "--date", metavar="YYYY-MM-DD[..YYYY-MM-DD]", help=_DATE_HELP),
    output: str = typer.Option(
        "file://out/batch",
        "--output",
        "-o",
        metavar="URL",
        help="Where `batch daily` wrote daily_revenue (file://DIR).",
    ),
    warehouse: str = typer.Option(
        ..., "--warehouse", "-w", metavar="URL", help="The pipelines' warehouse, duckdb://FILE."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compare each day's batch revenue with the sum of the streaming revenue_per_minute windows, to
    the cent, with the late and dead-lettered order events; exit 3 when the late events do not
    explain a difference. For a daily cron job or an alert."""
    dates = _dates(date)
    _run_and_show(lambda: reconcile_written(local_session(), dates, output, warehouse), as_json)


@app.command("package")
def package(
    output: Path = typer.Option(Path("dist/batch"), "--output", "-o", metavar="DIR", help="Where the job files go."),
) -> None:
    """Write the job's main file and its --py-files zip for `gcloud dataproc batches submit pyspark`."""
    main, archive = build(output)
    typer.echo(f"{main}\n{archive}  ({archive.stat().st_size:,} bytes)")
    typer.echo(
        f"  submit: gcloud dataproc batches submit pyspark {main} --region=REGION --version={DATAPROC_RUNTIME} "
        f"--py-files={archive} -- --date YYYY-MM-DD --input bigquery://PROJECT.DATASET "
        "--output bigquery://PROJECT.DATASET --reconcile-with bigquery://PROJECT.DATASET "
        "--temporary-gcs-bucket BUCKET"
    )


@app.command("class-archive")
def class_archive(
    force: bool = typer.Option(False, "--force", help="Record it again even if this installation has one."),
) -> None:
    """Record the class-data archive that local Spark runs start their JVM from: a training run
    of the daily job on a simulated night (about a minute, once per installation; `make` does
    it). Local runs without one start as usual, only slower."""
    try:
        path, seconds = record_archive(force=force)
    except ArchiveError as exc:
        raise _fail(str(exc), code=1) from None
    size = path.stat().st_size / 2**20
    typer.echo(f"{path}  ({size:,.0f} MiB, " + (f"recorded in {seconds:.0f} s)" if seconds else "already recorded)"))
