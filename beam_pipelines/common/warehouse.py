"""The warehouse sinks: BigQuery on GCP, DuckDB locally, with the same tables and columns.

Tables, columns, partitioning and clustering all come from the .avsc schemas (the
``bigquery`` attribute names the table): nothing here restates a column.

- BigQuery: ``WriteToBigQuery`` creates each table partitioned by day on the schema's
  ``partition_field`` and clustered on its ``clustering`` columns; batch jobs load files,
  streaming jobs use streaming inserts. Rows are appended: a session or minute updated by
  a late pane appears again with ``pane_timing`` LATE (the latest row is the current one).
- DuckDB: a table per schema in one database file, written by bundle through Arrow.
  Result tables keep one row per key (``TABLE_KEYS``): a late pane replaces the earlier row,
  a replayed alert is ignored. ``dead_letter`` is appended to, like in BigQuery. Every sink
  of a process writes through one shared connection (``acquire_writer``): the local
  streaming runner sets a DoFn up again for every bundle, and a connection and CREATE TABLE
  per bundle took 14% of a streaming job's time. ``warehouse_writers()`` keeps the writers
  open for a whole run and has them publish snapshots for readers (streamforge/warehouse.py).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines.common.io import WarehouseSpec
from streamforge.schemas import EventSchema, get_schema
from streamforge.timeutil import format_timestamp
from streamforge.warehouse import WarehouseWriter

__all__ = [
    "TABLE_KEYS",
    "WriteTable",
    "acquire_writer",
    "create_table_sql",
    "duckdb_type",
    "release_writer",
    "table_name",
    "warehouse_writers",
]

#: Result tables: schema subject -> the columns that identify a row, and what a second row
#: with the same key does ("replace": the newer pane wins; "ignore": the first one stays).
TABLE_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "session_aggregate": (("session_id",), "replace"),
    "revenue_per_minute": (("window_start",), "replace"),
    "revenue_by_category_region": (("window_start", "region", "category"), "replace"),
    "fraud_alert": (("alert_id",), "ignore"),
    "dead_letter": ((), "append"),
    # The valid, deduplicated events themselves (run --raw-events): what the daily batch reads.
    "clickstream_event": (("event_id",), "ignore"),
    "order_event": (("event_id",), "ignore"),
    # CDC (beam_pipelines/cdc): a redelivered change repeats its key and LSN; the first row stays.
    "cdc_change": (("primary_key", "lsn"), "ignore"),  # one <source table>_changelog per source table
    "price_change": (("product_id", "lsn"), "ignore"),
    "stock_alert": (("product_id", "lsn"), "ignore"),
    "order_status_transition": (("order_id", "lsn"), "ignore"),
}

_PRIMITIVE = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "bytes": "BLOB",
}


def table_name(subject: str) -> str:
    table = get_schema(subject).bigquery
    if table is None:
        raise ValueError(f"schema {subject} declares no warehouse table")
    return table.table


def duckdb_type(avro_type: Any) -> str:
    """The DuckDB column type of an Avro type (nullable unions give their non-null branch)."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise ValueError(f"unsupported union {avro_type}")
        return duckdb_type(branches[0])
    if isinstance(avro_type, str):
        return _PRIMITIVE[avro_type]
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        return f"DECIMAL({avro_type['precision']},{avro_type.get('scale', 0)})"
    if logical in ("timestamp-millis", "timestamp-micros"):
        return "TIMESTAMPTZ"
    kind = avro_type["type"]
    if kind == "enum":
        return "VARCHAR"
    if kind == "array":
        return duckdb_type(avro_type["items"]) + "[]"
    if kind == "map":
        return f"MAP(VARCHAR, {duckdb_type(avro_type['values'])})"
    if kind == "record":
        return "STRUCT(" + ", ".join(f'"{f["name"]}" {duckdb_type(f["type"])}' for f in avro_type["fields"]) + ")"
    return duckdb_type(kind)


def create_table_sql(schema: EventSchema, table: str | None = None) -> str:
    """DuckDB DDL of the schema's table (or of ``table``, a table of the same shape)."""
    columns = []
    for f in schema.definition["fields"]:
        nullable = isinstance(f["type"], list) and "null" in f["type"]
        columns.append(f'"{f["name"]}" {duckdb_type(f["type"])}{"" if nullable else " NOT NULL"}')
    key, _ = TABLE_KEYS.get(schema.subject, ((), "append"))
    if key:
        columns.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in key) + ")")
    return f'CREATE TABLE IF NOT EXISTS "{table or schema.bigquery.table}" (\n  ' + ",\n  ".join(columns) + "\n)"


_writers: dict[str, list[Any]] = {}  # path -> [WarehouseWriter, users]
_writers_lock = threading.Lock()
_held_open = 0  # open warehouse_writers() scopes
_snapshot_every_s: float | None = None


def acquire_writer(path: str) -> WarehouseWriter:
    """This process's writer of ``path`` (opened on first use); ``release_writer`` when done."""
    with _writers_lock:
        entry = _writers.get(path)
        if entry is None:
            entry = _writers[path] = [WarehouseWriter(path, snapshot_every_s=_snapshot_every_s), 0]
        entry[1] += 1
        return entry[0]


def release_writer(path: str) -> None:
    """The last user of a writer closes it, unless a ``warehouse_writers()`` scope is open."""
    with _writers_lock:
        entry = _writers.get(path)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0 and not _held_open:
                del _writers[path]
                entry[0].close()


@contextmanager
def warehouse_writers(snapshot_every_s: float | None = None) -> Iterator[None]:
    """While open, writers stay open between bundles (publishing a snapshot every
    ``snapshot_every_s`` of writing, if given); on exit the unused ones close and free the file."""
    global _held_open, _snapshot_every_s
    with _writers_lock:
        _held_open += 1
        saved, _snapshot_every_s = _snapshot_every_s, snapshot_every_s
    try:
        yield
    finally:
        with _writers_lock:
            _held_open -= 1
            _snapshot_every_s = saved
            if not _held_open:
                for path, (writer, users) in list(_writers.items()):
                    if users <= 0:
                        del _writers[path]
                        writer.close()


class _WriteDuckDB(beam.DoFn):
    """Writes a bundle's rows in one statement (through Arrow), at most ``batch`` rows at a time."""

    def __init__(self, path: str, subject: str, table: str, batch: int = 50_000):
        self.path, self.subject, self.table, self.batch = path, subject, table, batch

    def setup(self) -> None:
        self.writer = acquire_writer(self.path)
        self.writer.ensure(self.table, create_table_sql(get_schema(self.subject), self.table))
        self.key, self.mode = TABLE_KEYS[self.subject]
        self.written = Metrics.counter("warehouse", f"{self.table}_rows")
        verb = {"replace": "INSERT OR REPLACE", "ignore": "INSERT OR IGNORE", "append": "INSERT"}[self.mode]
        self.sql = f'{verb} INTO "{self.table}" BY NAME SELECT * FROM rows_batch'

    def start_bundle(self) -> None:
        self.rows: dict[Any, dict[str, Any]] | list[dict[str, Any]] = {} if self.key else []

    def process(self, row: dict[str, Any]) -> None:
        if self.key:
            key = tuple(row[k] for k in self.key)
            if self.mode == "replace" or key not in self.rows:
                self.rows[key] = row  # one row per key per statement; the latest pane wins
        else:
            self.rows.append(row)
        if len(self.rows) >= self.batch:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        rows = list(self.rows.values()) if isinstance(self.rows, dict) else self.rows
        if not rows:
            return
        batch = pa.Table.from_pylist(rows)
        with self.writer.lock:
            con = self.writer.connection
            con.register("rows_batch", batch)
            try:
                con.execute(self.sql)
            finally:
                con.unregister("rows_batch")
            self.writer.wrote()
        self.written.inc(len(rows))
        self.start_bundle()

    def teardown(self) -> None:
        if getattr(self, "writer", None) is not None:
            release_writer(self.path)
            self.writer = None


def bigquery_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's JSON form for BigQuery: timestamps as RFC 3339, decimals as strings."""
    return {name: _bigquery_value(value) for name, value in record.items()}


def _bigquery_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [_bigquery_value(v) for v in value]
    if isinstance(value, dict):
        return bigquery_row(value)
    return value


class WriteTable(beam.PTransform):
    """Rows of one schema (its Python form) -> that schema's warehouse table, or ``table``
    (several tables of one shape: the CDC changelogs)."""

    def __init__(self, warehouse: WarehouseSpec, subject: str, *, streaming: bool, table: str | None = None):
        super().__init__()
        self.warehouse, self.subject, self.streaming = warehouse, subject, streaming
        self.table_name = table or table_name(subject)

    def expand(self, rows: beam.PCollection):
        if self.warehouse.kind == "duckdb":
            return rows | "Write to DuckDB" >> beam.ParDo(
                _WriteDuckDB(self.warehouse.path, self.subject, self.table_name)
            )
        table = get_schema(self.subject).bigquery
        extra: dict[str, Any] = {}
        if table.partition_field:
            extra["timePartitioning"] = {"type": table.partition_type, "field": table.partition_field}
        if table.clustering:
            extra["clustering"] = {"fields": list(table.clustering)}
        method = (
            beam.io.WriteToBigQuery.Method.STREAMING_INSERTS
            if self.streaming
            else beam.io.WriteToBigQuery.Method.FILE_LOADS
        )
        return (
            rows
            | "BigQuery JSON rows" >> beam.Map(bigquery_row)
            | "Write to BigQuery"
            >> beam.io.WriteToBigQuery(
                table=f"{self.warehouse.project}:{self.warehouse.dataset}.{self.table_name}",
                schema={"fields": table.schema_json()},
                additional_bq_parameters=extra,
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
                method=method,
            )
        )
