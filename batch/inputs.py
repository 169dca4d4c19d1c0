"""Where the batch reads events from, and the checked events of the requested dates.

``--input``:

- ``file://DIR``: the simulator's JSON lines, ``DIR/clickstream.jsonl`` and ``DIR/orders.jsonl``
  (``.jsonl.gz`` too), validated like the pipelines validate messages;
- ``parquet://DIR``: ``DIR/clickstream_events`` and ``DIR/order_events``, Parquet with the
  schemas' columns (any layout Spark reads: files, or date partitions);
- ``duckdb://FILE``: a local warehouse written by ``streamforge run ... --raw-events``; its
  ``clickstream_events`` and ``order_events`` rows of the dates are exported to Parquet first;
- ``bigquery://PROJECT.DATASET``: the same tables in BigQuery, through the Spark BigQuery
  connector (which the Dataproc Serverless runtime provides).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch.schemas import STREAMS
from batch.validation import Checked, check_json_lines, check_typed
from streamforge.transport import STREAM_FILES

__all__ = ["Source", "SourceError", "parse_source", "read_events", "read_table"]


class SourceError(ValueError):
    """An input URL or location is wrong (the message says which and why)."""


@dataclass(frozen=True)
class Source:
    kind: str  # jsonl, parquet, duckdb, bigquery
    location: str

    def describe(self) -> str:
        return f"{self.kind} {self.location}"


def parse_source(url: str) -> Source:
    parts = urlsplit(url)
    location = parts.netloc + parts.path
    if parts.scheme == "file" and location:
        return Source("jsonl", location)
    if parts.scheme == "parquet" and location:
        return Source("parquet", location.rstrip("/"))
    if parts.scheme == "duckdb" and location:
        return Source("duckdb", location)
    if parts.scheme == "bigquery" and parts.netloc.count(".") == 1 and parts.path in ("", "/"):
        return Source("bigquery", parts.netloc)
    raise SourceError(
        f"--input {url!r}: expected file://DIR (JSON lines), parquet://DIR, duckdb://FILE or bigquery://PROJECT.DATASET"
    )


def _day_bounds(dates: list[date]) -> tuple[datetime, datetime]:
    return (
        datetime.combine(min(dates), time(), timezone.utc),
        datetime.combine(max(dates) + timedelta(days=1), time(), timezone.utc),
    )


def _in_dates(checked: Checked, dates: list[date]) -> Checked:
    """The rows of the dates, and the rejected rows whose date is unknown (no readable event_time)."""
    start, end = _day_bounds(dates)
    return checked.where(
        F.col("event_time").isNull() | ((F.col("event_time") >= F.lit(start)) & (F.col("event_time") < F.lit(end)))
    )


def read_events(
    spark: SparkSession,
    source: Source,
    stream: str,
    dates: list[date],
    now: datetime,
    max_clock_skew: timedelta,
    scratch: Path | None = None,
    min_event_time: datetime | None = None,
) -> Checked:
    """The ``stream``'s checked events of ``dates`` (UTC days) from ``source``."""
    table = STREAMS[stream][1]
    if source.kind == "jsonl":
        directory = Path(source.location)
        name = STREAM_FILES[stream]
        found = [p for p in (directory / name, directory / (name + ".gz")) if p.exists()]
        if not found:
            raise SourceError(f"no {name} in {directory} (the simulator's output directory)")
        lines = spark.read.text(str(found[0]))
        return _in_dates(check_json_lines(stream, lines, now, max_clock_skew, min_event_time), dates)
    if source.kind == "parquet":
        path = Path(source.location) / table
        if not path.exists():
            raise SourceError(f"no Parquet table {path}")
        frame = spark.read.parquet(str(path))
    else:
        frame = read_table(spark, source, table, ("event_time",), dates, scratch)
    start, end = _day_bounds(dates)  # filtered before the checks: Parquet and BigQuery skip the other days
    frame = frame.where(
        F.col("event_time").isNull() | ((F.col("event_time") >= F.lit(start)) & (F.col("event_time") < F.lit(end)))
    )
    return check_typed(stream, frame, now, max_clock_skew, min_event_time)


def read_table(
    spark: SparkSession,
    source: Source,
    table: str,
    time_columns: tuple[str, ...],
    dates: list[date],
    scratch: Path | None = None,
) -> DataFrame:
    """The rows of a warehouse table (DuckDB or BigQuery) whose first non-null ``time_columns``
    value falls on the dates."""
    start, end = _day_bounds(dates)
    when = "COALESCE(" + ", ".join(time_columns) + ")"
    if source.kind == "bigquery":
        return (
            spark.read.format("bigquery")
            .option("table", f"{source.location}.{table}")
            .option("filter", f"{when} >= TIMESTAMP('{start.isoformat()}') AND {when} < TIMESTAMP('{end.isoformat()}')")
            .load()
        )
    if source.kind != "duckdb":
        raise SourceError(f"{source.describe()}: a warehouse is duckdb://FILE or bigquery://PROJECT.DATASET")
    return spark.read.parquet(_export_duckdb(Path(source.location), table, when, start, end, scratch))


def _export_duckdb(database: Path, table: str, when: str, start: datetime, end: datetime, scratch: Path | None) -> str:
    """The table's rows of [start, end) as a Parquet file (DuckDB runs here, not on Dataproc)."""
    import duckdb

    if not database.is_file():
        raise SourceError(f"no DuckDB warehouse at {database}")
    target = Path(scratch or tempfile.mkdtemp(prefix="sf-batch-")) / f"{table}.parquet"
    with duckdb.connect(str(database), read_only=True) as con:
        present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if table not in present:
            hint = ": run the pipelines with --raw-events" if table in {t for _, t in STREAMS.values()} else ""
            raise SourceError(f"{database} has no table {table}{hint}")
        con.execute(
            f"COPY (SELECT * FROM \"{table}\" WHERE {when} >= TIMESTAMPTZ '{start.isoformat()}' "
            f"AND {when} < TIMESTAMPTZ '{end.isoformat()}') TO '{target}' (FORMAT parquet)"
        )
    return str(target)
