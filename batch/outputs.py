"""Writing the batch's tables so that re-running a date replaces that date and nothing else.

``--output``:

- ``file://DIR``: a Parquet dataset per table, ``DIR/<table>/date=YYYY-MM-DD/``, and the same
  rows in the DuckDB database ``DIR/batch.duckdb``. A date's partition directory is removed
  before its rows are written (so a date that now has no rows ends up empty), and in DuckDB
  the date's rows are deleted and inserted in one transaction.
- ``bigquery://PROJECT.DATASET``: day-partitioned tables (partition field ``date``); each date
  is written with the connector's ``datePartition`` and mode overwrite, which replaces that
  partition only (the INDIRECT write method, staged in ``--temporary-gcs-bucket``).
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.frames import spark_schema
from streamforge.schemas.daily_tables import COLUMN_TYPES, TABLES

__all__ = ["DUCKDB_FILE", "Sink", "SinkError", "parse_sink", "read_written", "write_table"]

DUCKDB_FILE = "batch.duckdb"
#: The job writes its tables from several threads; the DuckDB file takes one writer at a time.
_DUCKDB_WRITER = threading.Lock()


class SinkError(ValueError):
    """An output URL is wrong or incomplete."""


@dataclass(frozen=True)
class Sink:
    kind: str  # local or bigquery
    location: str  # DIR, or PROJECT.DATASET
    temporary_bucket: str | None = None

    def describe(self) -> str:
        if self.kind == "local":
            return f"{self.location}/<table>/date=... (Parquet) and {self.location}/{DUCKDB_FILE}"
        return f"BigQuery dataset {self.location}"


def parse_sink(url: str, temporary_bucket: str | None = None) -> Sink:
    parts = urlsplit(url)
    if parts.scheme == "file" and (parts.netloc or parts.path):
        return Sink("local", (parts.netloc + parts.path).rstrip("/") or "/")
    if parts.scheme == "bigquery" and parts.netloc.count(".") == 1 and parts.path in ("", "/"):
        if not temporary_bucket:
            raise SinkError(
                "--output bigquery://... needs --temporary-gcs-bucket (the connector stages the rows there)"
            )
        return Sink("bigquery", parts.netloc, temporary_bucket)
    raise SinkError(f"--output {url!r}: expected file://DIR or bigquery://PROJECT.DATASET")


def write_table(sink: Sink, table: str, rows: DataFrame, dates: list[date]) -> int:
    """Replaces the ``dates`` of ``table`` with ``rows`` (which hold only those dates); returns
    how many rows the dates now hold."""
    if sink.kind == "local":
        return _write_local(Path(sink.location), table, rows, dates)
    return _write_bigquery(sink, table, rows, dates)


def _write_local(directory: Path, table: str, rows: DataFrame, dates: list[date]) -> int:
    dataset = directory / table
    for day in dates:
        shutil.rmtree(dataset / f"date={day.isoformat()}", ignore_errors=True)
    rows.write.mode("append").partitionBy("date").parquet(str(dataset))
    return _load_duckdb(directory / DUCKDB_FILE, dataset, table, dates)


def _load_duckdb(database: Path, dataset: Path, table: str, dates: list[date]) -> int:
    import duckdb

    columns = TABLES[table].columns
    ddl = ", ".join(f'"{name}" {COLUMN_TYPES[kind][1]}' for name, kind, _ in columns)
    files = [str(p) for day in dates for p in sorted((dataset / f"date={day.isoformat()}").glob("*.parquet"))]
    placeholders = ", ".join("?" for _ in dates)
    with _DUCKDB_WRITER, duckdb.connect(str(database)) as con:
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({ddl})')
        con.execute("BEGIN TRANSACTION")
        con.execute(f'DELETE FROM "{table}" WHERE "date" IN ({placeholders})', dates)
        if files:
            names = ", ".join(f'"{name}"' for name, _, _ in columns)
            con.execute(
                f'INSERT INTO "{table}" ({names}) SELECT {names} FROM read_parquet(?, hive_partitioning = true, '
                f"hive_types = {{'date': DATE}})",
                [files],
            )
        con.execute("COMMIT")
        return con.execute(f'SELECT count(*) FROM "{table}" WHERE "date" IN ({placeholders})', dates).fetchone()[0]


def _write_bigquery(sink: Sink, table: str, rows: DataFrame, dates: list[date]) -> int:
    rows = rows.persist()
    written = 0
    for day in dates:
        part = rows.where(F.col("date") == F.lit(day))
        written += part.count()
        (
            part.write.format("bigquery")
            .option("table", f"{sink.location}.{table}")
            .option("writeMethod", "indirect")
            .option("temporaryGcsBucket", sink.temporary_bucket)
            .option("partitionField", "date")
            .option("partitionType", "DAY")
            .option("datePartition", day.strftime("%Y%m%d"))
            .mode("overwrite")
            .save()
        )
    rows.unpersist()
    return written


def read_written(spark, sink: Sink, table: str, dates: list[date]) -> DataFrame:
    """The rows of ``dates`` a previous run wrote to ``table``."""
    if sink.kind == "local":
        dataset = Path(sink.location) / table
        if not dataset.is_dir():
            raise SinkError(f"no {table} in {sink.location}: run `streamforge batch daily` for the dates first")
        frame = spark.read.schema(spark_schema(table)).parquet(str(dataset))
    else:
        frame = (
            spark.read.format("bigquery")
            .option("table", f"{sink.location}.{table}")
            .option("filter", f"date BETWEEN DATE '{min(dates).isoformat()}' AND DATE '{max(dates).isoformat()}'")
            .load()
        )
    return frame.where(F.col("date").isin(list(dates)))
