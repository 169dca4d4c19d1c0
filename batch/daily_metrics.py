"""The daily batch job: business metrics for one date or a range, from the events the pipelines keep.

    daily_metrics.py --date 2026-11-01[..2026-11-07] --input URL --output URL
                     [--reconcile-with WAREHOUSE] [--temporary-gcs-bucket B] [--config TOML]

Reads the clickstream and order events of the dates (batch/inputs.py), checks them like the
pipelines do (batch/validation.py), computes daily_revenue, daily_revenue_by_category,
daily_top_regions, daily_conversion_funnel and daily_order_status (batch/metrics.py), keeps
the rows it could not use in batch_rejects, and replaces those dates in the output
(batch/outputs.py). With ``--reconcile-with`` it also compares the day's revenue with the
streaming revenue_per_minute windows of that warehouse (batch/reconcile.py) and exits 3 when
they disagree beyond what late events explain.

On Dataproc Serverless (the runtime provides PySpark and the BigQuery connector):

    gcloud dataproc batches submit pyspark batch/daily_metrics.py --region=REGION --version=3.0 \\
        --py-files=dist/batch/streamforge_batch.zip -- --date 2026-11-01 \\
        --input bigquery://PROJECT.analytics --output bigquery://PROJECT.analytics \\
        --reconcile-with bigquery://PROJECT.analytics --temporary-gcs-bucket BUCKET

Locally: ``streamforge batch daily ...`` runs this on local Spark bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

__all__ = ["DailyRun", "JobError", "argument_parser", "main", "parse_dates", "reconcile_written", "run"]

MISMATCH_EXIT = 3


class JobError(ValueError):
    """A wrong argument or input (the message says which)."""


def parse_dates(text: str) -> list[date]:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD..YYYY-MM-DD`` (inclusive) -> the dates."""
    first, _, last = text.partition("..")
    try:
        start = date.fromisoformat(first)
        end = date.fromisoformat(last) if last else start
    except ValueError:
        raise JobError(f"--date {text!r}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
    if end < start:
        raise JobError(f"--date {text!r}: the range ends before it starts")
    if (end - start).days >= 366:
        raise JobError(f"--date {text!r}: more than a year at once; run it in parts")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


@dataclass
class DailyRun:
    """What a run did: per stream, input rows (of the dates) = valid + rejected + duplicates."""

    dates: list[date]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    reconciliation: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    # step -> seconds; the orders' and the clicks' steps run at the same time, so they overlap
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[step] = round(self.timings.get(step, 0.0) + now - since, 2)
        return now

    @property
    def mismatched(self) -> bool:
        return any(r["status"] == "MISMATCH" for r in self.reconciliation)

    def summary(self) -> dict:
        return {
            "dates": [d.isoformat() for d in self.dates],
            "counts": self.counts,
            "rows_written": self.rows_written,
            "reconciliation": self.reconciliation,
            "seconds": round(self.seconds, 2),
            "timings": self.timings,
        }


def run(
    spark,
    dates: list[date],
    input_url: str,
    output_url: str,
    *,
    reconcile_with: str | None = None,
    temporary_bucket: str | None = None,
    config=None,
    now: datetime | None = None,
) -> DailyRun:
    """The job: read and check the dates' events, compute and write the tables, reconcile."""
    from batch import metrics
    from batch.inputs import SourceError, parse_source, read_events
    from batch.outputs import SinkError, parse_sink, write_table
    from streamforge.config import load_config

    started = time.perf_counter()
    config = config or load_config()
    try:
        source, sink = parse_source(input_url), parse_sink(output_url, temporary_bucket)
        warehouse = parse_source(reconcile_with) if reconcile_with else None
    except (SourceError, SinkError) as exc:
        raise JobError(str(exc)) from None
    if warehouse is not None and warehouse.kind not in ("duckdb", "bigquery"):
        raise JobError(
            f"--reconcile-with {reconcile_with!r}: expected the pipelines' warehouse, duckdb://FILE "
            "or bigquery://PROJECT.DATASET"
        )
    now = now or datetime.now(timezone.utc)
    report = DailyRun(dates)
    with tempfile.TemporaryDirectory(prefix="sf-batch-") as scratch:
        events = _Events(
            lambda stream: read_events(
                spark,
                source,
                stream,
                dates,
                now,
                config.pipelines.max_clock_skew,
                Path(scratch),
                config.pipelines.min_event_time,
            ),
            int(spark.conf.get("spark.sql.shuffle.partitions")),
        )

        def write(name: str, frame, since: float) -> None:
            report.rows_written[name] = write_table(sink, name, frame, dates)
            report.timed(f"write {name}", since)

        def funnel() -> None:
            since = time.perf_counter()
            sessions = events.sessions()
            since = report.timed("clicks: check, into sessions, one event per event_id", since)
            write("daily_conversion_funnel", metrics.conversion_funnel(sessions), since)

        # The two streams are independent: each one's plans are built, and its Spark jobs run,
        # while the other's driver plans or its last tasks leave a core idle (docs/batch.md).
        try:
            try:
                with ThreadPoolExecutor(max_workers=4, thread_name_prefix="streamforge-batch") as pool:
                    pending = [pool.submit(funnel)]
                    step = time.perf_counter()
                    orders = events.orders()
                    step = report.timed("orders: check, keep, one per event_id", step)
                    pending.append(pool.submit(write, "daily_order_status", metrics.order_status(orders), step))
                    totals, lines = pool.submit(events.order_totals), pool.submit(events.line_totals)
                    totals, lines = totals.result(), lines.result()
                    step = report.timed("orders: summaries", step)
                    tables = {
                        "daily_revenue": metrics.daily_revenue(totals, lines),
                        "daily_revenue_by_category": metrics.revenue_by_category(lines),
                        "daily_top_regions": metrics.top_regions(totals, config.batch.top_regions),
                    }
                    pending += [pool.submit(write, name, frame, step) for name, frame in tables.items()]
                    for future in pending:
                        future.result()
            except SourceError as exc:
                raise JobError(str(exc)) from None
            step = time.perf_counter()
            report.counts = events.counts()
            report.rows_written["batch_rejects"] = write_table(
                sink, "batch_rejects", events.rejected(min(dates)), dates
            )
            step = report.timed("count, write batch_rejects", step)
            if warehouse is not None:
                report.reconciliation = _reconcile(
                    spark, sink, tables["daily_revenue"], warehouse, dates, Path(scratch)
                )
                report.rows_written["daily_reconciliation"] = len(report.reconciliation)
                report.timed("reconcile", step)
        finally:
            events.release()
    report.seconds = time.perf_counter() - started
    return report


class _Events:
    """The checked events laid out for the metrics, and what they count.

    Orders: every checked row is kept (in memory, spilling to disk), the rejected ones with
    their payload; the duplicate check, the order status, and two small summaries (per status
    and region, and per category and buyer: batch.metrics.order_totals and line_totals), which
    the other order metrics and the counts read, come from the kept rows. Clicks: only the
    funnel reads them, through their sessions, which are what is kept. Either stream's rejected
    rows are known by count (its input rows less the valid ones, duplicates included: a count
    needs no checks, Spark reads event_time alone) and read only when there are some.
    """

    def __init__(self, read, partitions: int):
        self._read, self.partitions = read, partitions  # read(stream) -> batch.validation.Checked
        self.checked: dict = {}
        self._cached: list = []
        self._marked = self._orders = self._sessions = None
        self._valid: dict[str, int] = {}
        self._candidates: dict[str, int] = {}
        self._rejected: dict[str, int] = {}

    def _keep(self, frame):
        from pyspark import StorageLevel

        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        self._cached.append(frame)
        return frame

    def orders(self):
        """The valid order events, one per event_id, with ``_copies``."""
        from pyspark.sql import functions as F

        from batch import metrics
        from batch.validation import PAYLOAD, REASON

        self.checked["orders"] = self._read("orders")
        self._marked = self._keep(
            metrics.partitioned(self.checked["orders"].marked(), "orders", self.partitions, keep=(REASON, PAYLOAD))
        )
        orders = self._marked.where(F.col(REASON).isNull()).drop(REASON, PAYLOAD)
        if metrics.has_duplicates(orders, "orders"):  # rare in the pipelines' tables: then drop them exactly
            self._orders = self._keep(metrics.deduplicated(orders, "orders"))
        else:
            self._orders = orders.withColumn("_copies", F.lit(1))
        return self._orders

    def order_totals(self):
        """batch.metrics.order_totals of ``orders``, computed and kept; counts the orders."""
        from pyspark.sql import functions as F

        from batch import metrics

        totals = self._keep(metrics.order_totals(self._orders))
        total = totals.agg(F.sum("events").alias("valid"), F.sum("copies").alias("candidates")).first()
        self._count("orders", total["valid"], total["candidates"])
        return totals

    def line_totals(self):
        """batch.metrics.line_totals of ``orders``, computed and kept."""
        from batch import metrics

        lines = self._keep(metrics.line_totals(self._orders))
        lines.count()
        return lines

    def sessions(self):
        """The valid clicks as sessions (batch.metrics.session_funnel), computed and kept."""
        from pyspark.sql import functions as F

        from batch import metrics

        self.checked["clickstream"] = self._read("clickstream")
        clicks = metrics.partitioned(self.checked["clickstream"].candidates, "clickstream", self.partitions)
        self._sessions = self._keep(metrics.session_funnel(clicks))
        total = self._sessions.agg(F.sum("events").alias("valid"), F.sum("copies").alias("candidates")).first()
        self._count("clickstream", total["valid"], total["candidates"])
        return self._sessions

    def _count(self, stream: str, valid: int | None, candidates: int | None) -> None:
        self._valid[stream], self._candidates[stream] = valid or 0, candidates or 0
        self._rejected[stream] = self.checked[stream].rows.count() - self._candidates[stream]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per stream: input = valid + rejected + duplicates (after ``order_totals`` and ``sessions``)."""
        return {
            stream: {
                "input": self._candidates[stream] + self._rejected[stream],
                "valid": self._valid[stream],
                "rejected": self._rejected[stream],
                "duplicates": self._candidates[stream] - self._valid[stream],
            }
            for stream in ("orders", "clickstream")
        }

    def rejected(self, first_date: date):
        """The batch_rejects rows (after ``order_totals`` and ``sessions``): dated by event_time, else
        by ``first_date``."""
        from pyspark.sql import functions as F

        from batch.frames import conform
        from batch.validation import PAYLOAD, REASON, payload_encoding, payload_text

        orders = self._marked.where(F.col(REASON).isNotNull() if self._rejected["orders"] else F.lit(False))
        sources = [
            (
                "orders",
                orders.select(
                    "event_time",
                    "event_id",
                    F.col(REASON).alias("reason"),
                    payload_text(F.col(PAYLOAD)).alias("payload"),
                    payload_encoding(F.col(PAYLOAD)).alias("payload_encoding"),
                ),
            )
        ]
        if self._rejected["clickstream"]:
            sources.append(("clickstream", self.checked["clickstream"].rejected))
        rows = None
        for stream, frame in sources:
            part = frame.select(
                F.coalesce(F.to_date("event_time"), F.lit(first_date)).alias("date"),
                F.lit(stream).alias("stream"),
                "event_id",
                "reason",
                "payload",
                "payload_encoding",
            )
            rows = part if rows is None else rows.unionByName(part)
        return conform(rows, "batch_rejects")

    def release(self) -> None:
        for frame in self._cached:
            frame.unpersist()


def _reconcile(spark, sink, daily_revenue, warehouse, dates: list[date], scratch: Path) -> list[dict]:
    """Compares, writes daily_reconciliation, returns its rows."""
    from batch.inputs import SourceError, read_table
    from batch.outputs import write_table
    from batch.reconcile import reconcile

    try:
        per_minute = read_table(spark, warehouse, "revenue_per_minute", ("window_start",), dates, scratch)
        dead = read_table(spark, warehouse, "dead_letter", ("event_time", "received_at"), dates, scratch)
    except SourceError as exc:
        raise JobError(f"--reconcile-with: {exc}") from None
    result = reconcile(daily_revenue, per_minute, dead, dates).persist()
    rows = [_plain(row.asDict()) for row in result.orderBy("date").collect()]
    write_table(sink, "daily_reconciliation", result, dates)
    result.unpersist()
    return rows


def reconcile_written(
    spark, dates: list[date], output_url: str, warehouse_url: str, *, temporary_bucket: str | None = None
) -> DailyRun:
    """The reconciliation alone, from the daily_revenue an earlier run wrote to ``output_url``."""
    from batch.inputs import SourceError, parse_source
    from batch.outputs import SinkError, parse_sink, read_written

    started = time.perf_counter()
    try:
        sink = parse_sink(output_url, temporary_bucket)
        warehouse = parse_source(warehouse_url)
        daily_revenue = read_written(spark, sink, "daily_revenue", dates)
    except (SourceError, SinkError) as exc:
        raise JobError(str(exc)) from None
    if warehouse.kind not in ("duckdb", "bigquery"):
        raise JobError(f"--warehouse {warehouse_url!r}: expected duckdb://FILE or bigquery://PROJECT.DATASET")
    report = DailyRun(dates)
    with tempfile.TemporaryDirectory(prefix="sf-batch-") as scratch:
        report.reconciliation = _reconcile(spark, sink, daily_revenue, warehouse, dates, Path(scratch))
    report.rows_written["daily_reconciliation"] = len(report.reconciliation)
    report.seconds = time.perf_counter() - started
    return report


def _plain(row: dict) -> dict:
    return {
        k: (v.isoformat() if isinstance(v, date) else str(v) if not isinstance(v, (int, float, str, type(None))) else v)
        for k, v in row.items()
    }


def argument_parser() -> argparse.ArgumentParser:
    """The job's command line (what Dataproc passes: batch/packaging.py's manifest)."""
    parser = argparse.ArgumentParser(prog="daily_metrics.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", required=True, help="YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD (UTC days)")
    parser.add_argument("--input", required=True, help="file://DIR, parquet://DIR, duckdb://FILE or bigquery://P.D")
    parser.add_argument("--output", required=True, help="file://DIR or bigquery://PROJECT.DATASET")
    parser.add_argument("--reconcile-with", help="the pipelines' warehouse: duckdb://FILE or bigquery://P.D")
    parser.add_argument("--temporary-gcs-bucket", help="staging bucket for BigQuery writes")
    parser.add_argument("--config", help="a StreamForge TOML overriding the embedded defaults")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    from batch.spark import session
    from streamforge.config import ConfigError, load_config

    try:
        dates = parse_dates(args.date)
        config = load_config(args.config)
        spark = session()
        report = run(
            spark,
            dates,
            args.input,
            args.output,
            reconcile_with=args.reconcile_with,
            temporary_bucket=args.temporary_gcs_bucket,
            config=config,
        )
    except (JobError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.summary(), indent=2))
    return MISMATCH_EXIT if report.mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
