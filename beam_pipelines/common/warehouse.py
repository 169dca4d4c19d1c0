"""The warehouse sinks: BigQuery on GCP, DuckDB locally, with the same tables and columns.

Tables, columns, partitioning and clustering all come from the .avsc schemas (the
``bigquery`` attribute names the table): nothing here restates a column.

- BigQuery: ``WriteToBigQuery`` appends to the declared tables (streamforge/warehouse_tables.py,
  created by ``pulumi up`` or ``warehouse create``; never here); batch jobs load files,
  streaming jobs use streaming inserts. A session or minute updated by a late pane appears
  again with a higher ``pane_index``, a replayed row again as it was: ``<table>_current``
  holds one row per key, the row DuckDB keeps. A row a streaming insert refuses comes back
  as a dead letter with BigQuery's reason.
- DuckDB: a table per schema in one database file, written by bundle through Arrow.
  Result tables keep one row per key (``TABLE_KEYS``): a late pane replaces the earlier row,
  a replayed alert is ignored. ``dead_letter`` is appended to, like in BigQuery. Every sink
  of a process writes through one shared connection (``acquire_writer``): the local
  streaming runner sets a DoFn up again for every bundle, and a connection and CREATE TABLE
  per bundle took 14% of a streaming job's time. ``warehouse_writers()`` keeps the writers
  open for a whole run and has them publish snapshots for readers (streamforge/warehouse.py).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import orjson
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from beam_pipelines.common.dead_letters import dead_letter
from beam_pipelines.common.io import WarehouseSpec
from streamforge.schemas import EventSchema, get_schema
from streamforge.timeutil import format_timestamp
from streamforge.warehouse import WarehouseWriter
from streamforge.warehouse_tables import TABLE_KEYS, TableKey, current_name

_LOG = logging.getLogger(__name__)

__all__ = [
    "WriteTable",
    "append_to_bigquery",
    "acquire_writer",
    "create_table_sql",
    "flush_writers",
    "duckdb_type",
    "release_writer",
    "table_name",
    "warehouse_writers",
]

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
    key = TABLE_KEYS.get(schema.subject, TableKey((), "append")).columns
    if key:
        columns.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in key) + ")")
    name = table or schema.bigquery.table
    statements = [f'CREATE TABLE IF NOT EXISTS "{name}" (\n  ' + ",\n  ".join(columns) + "\n)"]
    # A warehouse written before a later version added a field (with its default) gains it.
    first = {f["name"] for f in get_schema(schema.subject, 1).definition["fields"]}
    statements += [
        f'ALTER TABLE "{name}" ADD COLUMN IF NOT EXISTS "{f["name"]}" {duckdb_type(f["type"])} '
        f"DEFAULT {_sql_literal(f['default'])}"
        for f in schema.definition["fields"]
        if f["name"] not in first
    ]
    if key:  # the table holds one row per key: the view BigQuery needs is the table itself
        statements.append(f'CREATE VIEW IF NOT EXISTS "{current_name(name)}" AS SELECT * FROM "{name}"')
    return ";\n".join(statements)


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


_writers: dict[str, list[Any]] = {}  # path -> [WarehouseWriter, users]
_writers_lock = threading.Lock()
_held_open = 0  # open warehouse_writers() scopes
_snapshot_every_s: float | None = None
_gather_s: float | None = None


def acquire_writer(path: str) -> WarehouseWriter:
    """This process's writer of ``path`` (opened on first use); ``release_writer`` when done."""
    with _writers_lock:
        entry = _writers.get(path)
        if entry is None:
            writer = WarehouseWriter(path, snapshot_every_s=_snapshot_every_s, gather_s=_gather_s)
            entry = _writers[path] = [writer, 0]
        entry[1] += 1
        return entry[0]


def flush_writers() -> None:
    """Write the rows every open writer gathered (a drained run has then written everything)."""
    with _writers_lock:
        writers = [writer for writer, _ in _writers.values()]
    for writer in writers:
        writer.flush()


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
def warehouse_writers(snapshot_every_s: float | None = None, gather_s: float | None = None) -> Iterator[None]:
    """While open, writers stay open between bundles (publishing a snapshot every
    ``snapshot_every_s`` of writing, and gathering each table's rows for ``gather_s``, if
    given); on exit the unused ones write what they gathered, close and free the file."""
    global _held_open, _snapshot_every_s, _gather_s
    with _writers_lock:
        _held_open += 1
        saved, _snapshot_every_s = _snapshot_every_s, snapshot_every_s
        saved_gather, _gather_s = _gather_s, gather_s
    try:
        yield
    finally:
        with _writers_lock:
            _held_open -= 1
            _snapshot_every_s, _gather_s = saved, saved_gather
            if not _held_open:
                for path, (writer, users) in list(_writers.items()):
                    if users <= 0:
                        del _writers[path]
                        writer.close()


class _WriteDuckDB(beam.DoFn):
    """Writes a bundle's rows in one statement (through Arrow), at most ``batch`` rows at a time;
    a streaming run's writer gathers them with other bundles' rows of the table (``GATHER_S``)."""

    def __init__(self, path: str, subject: str, table: str, batch: int = 50_000):
        self.path, self.subject, self.table, self.batch = path, subject, table, batch

    def setup(self) -> None:
        self.writer = acquire_writer(self.path)
        self.writer.ensure(self.table, create_table_sql(get_schema(self.subject), self.table))
        table_key = TABLE_KEYS[self.subject]
        self.key, self.mode = table_key.columns, table_key.repeat
        self.written = Metrics.counter("warehouse", f"{self.table}_rows")
        verb = {"replace": "INSERT OR REPLACE", "ignore": "INSERT OR IGNORE", "append": "INSERT"}[self.mode]
        self.insert_sql = f'{verb} INTO "{self.table}" BY NAME SELECT * FROM {{rows}} AS kept'
        self.sql = self.insert_sql.format(rows="rows_batch")
        self.start, self.end, self.superseded = None, None, None
        if table_key.within:
            # A row within a longer row of another key was merged into it: not written if that
            # row is here already (a replay), and deleted when that row arrives. ``?`` is the
            # batch's earliest start, so that DuckDB skips the older part of the table. Found by
            # joins, which DuckDB runs by hashing the batch: a correlated NOT EXISTS or
            # DELETE ... EXISTS materialises the table's side (docs/platform-notes.md).
            _owner, self.start, self.end = table_key.within
            self.superseded = table_key.superseded_sql("kept", "longer")
            self.keys_sql = ", ".join(f"kept.{k}" for k in self.key)

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
        if self.rows:
            self.writer.write(self.table, self.rows, self._statement, replace=self.mode == "replace")
            self.written.inc(len(self.rows))
        self.start_bundle()

    def _statement(self, con: Any, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` (the writer holds its lock)."""
        import pyarrow as pa

        con.register("rows_batch", pa.Table.from_pylist(rows))
        try:
            if self.superseded is None:
                con.execute(self.sql)
                return
            since = min(row[self.start] for row in rows)
            superseded = self._keys(con, "rows_batch", f'"{self.table}"', f"longer.{self.end} >= ?", since)
            if not superseded:
                con.execute(self.sql)
            else:  # rare: a replay of a session merged into a longer one since
                kept = [row for row in rows if tuple(row[k] for k in self.key) not in superseded]
                if kept:
                    con.register("rows_kept", pa.Table.from_pylist(kept))
                    try:
                        con.execute(self.insert_sql.format(rows="rows_kept"))
                    finally:
                        con.unregister("rows_kept")
            doomed = self._keys(con, f'"{self.table}"', "rows_batch", f"kept.{self.start} >= ?", since)
            if doomed:
                con.register("doomed", pa.Table.from_pylist([dict(zip(self.key, key)) for key in doomed]))
                try:
                    match = " AND ".join(f'"{self.table}".{k} = doomed.{k}' for k in self.key)
                    con.execute(f'DELETE FROM "{self.table}" USING doomed WHERE {match}')
                finally:
                    con.unregister("doomed")
        finally:
            con.unregister("rows_batch")

    def _keys(self, con: Any, kept: str, longer: str, where: str, since: Any) -> set[tuple[Any, ...]]:
        """The keys of ``kept``'s rows that lie within a ``longer`` row (a join: DuckDB hashes
        the batch and scans the table once)."""
        sql = f"SELECT DISTINCT {self.keys_sql} FROM {kept} AS kept JOIN {longer} AS longer ON {self.superseded} WHERE {where}"
        return {tuple(found) for found in con.execute(sql, [since]).fetchall()}

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


class _RefusedRow(beam.DoFn):
    """A row BigQuery's streaming insert refused for good -> a dead letter with BigQuery's reason
    and message (``failed_rows_with_errors``: after Beam retried the transient errors)."""

    def __init__(self, pipeline: str, table: str, dead_letters: bool):
        self.pipeline, self.table, self.dead_letters = pipeline, table, dead_letters

    def setup(self) -> None:
        self.refused = Metrics.counter("warehouse", f"{self.table}_refused")

    def process(self, failed: tuple[str, dict[str, Any], list[dict[str, Any]]]) -> Iterable[dict[str, Any]]:
        _destination, row, errors = failed
        self.refused.inc()
        reason = (errors[0].get("reason") if errors else None) or "unknown"
        message = (
            "; ".join(f"{e.get('location') or '(row)'}: {e.get('message') or e.get('reason')}" for e in errors)
            or "no error given"
        )
        if not self.dead_letters:  # the dead-letter table's own refusals: counted and logged
            _LOG.error("BigQuery refused a row of %s (%s): %s", self.table, reason, message)
            return
        yield dead_letter(
            self.pipeline,
            f"Write {self.table}",
            _cut_reason(f"bigquery_{reason}"),
            f"BigQuery refused the row for {self.table}: {message}",
            orjson.dumps(row),
            received_at=datetime.now(timezone.utc),
            source=_destination,
        )


def _cut_reason(reason: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in reason)[:64]


def append_to_bigquery(
    rows: beam.PCollection,
    warehouse: WarehouseSpec,
    table: str,
    fields: list[dict[str, Any]],
    layout: dict[str, Any],
    *,
    streaming: bool,
    pipeline: str,
    dead_letters: bool = True,
    label: str = "Write to BigQuery",
) -> beam.PCollection | None:
    """JSON rows -> appended to an existing BigQuery table (CREATE_NEVER: the declared tables,
    streamforge/warehouse_tables.py, deployed by ``pulumi up`` or ``warehouse create``), as
    steps of the calling transform. Streaming inserts return the rows refused for good as dead
    letters with BigQuery's reason (the dead-letter table's own refusals are counted and
    logged); a refused load job fails as a whole, so batch returns None."""
    method = (
        beam.io.WriteToBigQuery.Method.STREAMING_INSERTS if streaming else beam.io.WriteToBigQuery.Method.FILE_LOADS
    )
    if streaming:
        # A row's window means nothing to the table. Kept, it lost late panes on the local
        # runner: the streaming insert's ReshufflePerKey declares the global window without
        # moving its elements there, and Beam's Python trigger driver then drops an element of
        # a window already past the watermark as expired (docs/platform-notes.md).
        rows = rows | f"{label}: global window" >> beam.WindowInto(window.GlobalWindows())
    result = rows | label >> beam.io.WriteToBigQuery(
        table=f"{warehouse.project}:{warehouse.dataset}.{table}",
        schema={"fields": fields},
        additional_bq_parameters=layout,
        create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
        write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
        method=method,
        # a row refused as invalid is not retried (by default it would be, forever); a transient
        # error (an outage, a 5xx) still is, with backoff
        insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
    )
    if not streaming:
        return None
    return result.failed_rows_with_errors | "Refused rows" >> beam.ParDo(_RefusedRow(pipeline, table, dead_letters))


class WriteTable(beam.PTransform):
    """Rows of one schema (its Python form) -> that schema's warehouse table, or ``table``
    (several tables of one shape: the CDC changelogs). Returns the rows the warehouse refused
    one by one, as dead letters (BigQuery's streaming inserts), or None where a refusal fails
    the write as a whole (a DuckDB statement, a BigQuery load job: the run fails with the reason)."""

    def __init__(
        self,
        warehouse: WarehouseSpec,
        subject: str,
        *,
        streaming: bool,
        table: str | None = None,
        pipeline: str = "warehouse",
    ):
        super().__init__()
        self.warehouse, self.subject, self.streaming, self.pipeline = warehouse, subject, streaming, pipeline
        self.table_name = table or table_name(subject)

    def expand(self, rows: beam.PCollection):
        if self.warehouse.kind == "duckdb":
            rows | "Write to DuckDB" >> beam.ParDo(_WriteDuckDB(self.warehouse.path, self.subject, self.table_name))
            return None
        table = get_schema(self.subject).bigquery
        layout: dict[str, Any] = {}
        if table.partition_field:
            layout["timePartitioning"] = {"type": table.partition_type, "field": table.partition_field}
        if table.clustering:
            layout["clustering"] = {"fields": list(table.clustering)}
        return append_to_bigquery(
            rows | "BigQuery JSON rows" >> beam.Map(bigquery_row),
            self.warehouse,
            self.table_name,
            table.schema_json(),
            layout,
            streaming=self.streaming,
            pipeline=self.pipeline,
            dead_letters=self.subject != "dead_letter",
        )
