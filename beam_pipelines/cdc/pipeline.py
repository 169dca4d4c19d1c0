"""The CDC job: Debezium change events -> changelogs, current-state replicas, business events.

    Read <table> changes (one input per captured table) -> All changes
      -> Parse change events  (tombstones and heartbeats counted; the rest -> dead letters)
      -> Changes by table -> Write <table>_changelog                    (every change)
                          -> Apply to <table>_current                    (the replicated tables)
         products         -> Price changes            -> Write price_changes
                          -> Stock alerts             -> Write stock_alerts
         orders           -> Order status transitions -> Write order_status_transitions
    dead letters -> Write dead letters

Inputs: ``file://DIR`` reads ``DIR/<topic>.jsonl`` of each captured table (what
``streamforge cdc run --output file://DIR`` writes; batch), ``pubsub://.../subscriptions/NAME``
with ``{table}`` in NAME for the subscription of each table's topic (streaming).
Everything written is keyed by (table, primary key, LSN), so a redelivered change changes
nothing (envelope.py, replicas.py).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Iterable, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines.cdc.envelope import HEARTBEAT, OPS, TOMBSTONE, Change, InvalidChange, parse_change
from beam_pipelines.cdc.events import changelog_row, order_status_transition, price_change, stock_alert
from beam_pipelines.cdc.replicas import DuckDBReplicas, bigquery_cdc_element, bigquery_replica_schema, replica_name
from beam_pipelines.cdc.tables import SourceTable
from beam_pipelines.common.dead_letters import dead_letter
from beam_pipelines.common.io import ReadLineBatches, SpecError, WarehouseSpec
from beam_pipelines.common.warehouse import WriteTable, table_name

__all__ = ["ApplyReplica", "CdcInput", "CdcJob", "ParseChanges", "ReadChanges", "parse_cdc_input"]

PIPELINE = "cdc"
DEAD = "dead_letters"


@dataclass(frozen=True)
class CdcInput:
    """Where each captured table's change events are read from."""

    kind: str  # "file" or "pubsub"
    sources: tuple[tuple[str, str], ...]  # (table, path or subscription path)

    @property
    def bounded(self) -> bool:
        return self.kind == "file"


def parse_cdc_input(url: str, topics: Mapping[str, str]) -> CdcInput:
    """``file://DIR``, ``file://GLOB`` or ``pubsub://projects/P/subscriptions/...{table}...``
    (for a single table, its subscription); ``topics`` maps each table to read to its topic
    (``cdc.public.products``)."""
    if url.startswith("file://"):
        location = url[len("file://"):]
        if os.path.isdir(location):
            found = tuple((t, os.path.join(location, f"{topic}.jsonl")) for t, topic in topics.items()
                          if os.path.isfile(os.path.join(location, f"{topic}.jsonl")))
            if not found:
                raise SpecError(f"--input {url}: no change files ({', '.join(f'{t}.jsonl' for t in topics.values())})")
            return CdcInput("file", found)
        if not glob.glob(location):
            raise SpecError(f"--input {url}: no such file or directory")
        return CdcInput("file", (("*", location),))
    if url.startswith("pubsub://"):
        path = url[len("pubsub://"):]
        if "{table}" not in path and len(topics) == 1 and path.startswith("projects/") and "/subscriptions/" in path:
            return CdcInput("pubsub", ((next(iter(topics)), path),))  # one table: its subscription
        if "{table}" not in path or not path.startswith("projects/") or "/subscriptions/" not in path:
            raise SpecError(f"--input {url}: expected pubsub://projects/P/subscriptions/NAME with {{table}} in NAME "
                            "(one subscription per table topic), e.g. pubsub://projects/P/subscriptions/cdc-{table}")
        return CdcInput("pubsub", tuple((t, path.replace("{table}", t)) for t in topics))
    raise SpecError(f"--input {url}: expected file://DIR (of cdc run's JSONL files) or pubsub://projects/P/subscriptions/...{{table}}")


class _ParseChange(beam.DoFn):
    """Payload bytes -> Change; tombstones and heartbeats counted; the rest -> dead letters."""

    def __init__(self, tables: Mapping[str, SourceTable], source: str):
        self.tables, self.source = dict(tables), source

    def setup(self) -> None:
        counter = lambda name: Metrics.counter(PIPELINE, name)  # noqa: E731
        self.read, self.changes, self.dead = counter("read"), counter("changes"), counter("dead_lettered")
        self.skipped = {TOMBSTONE: counter("tombstones"), HEARTBEAT: counter("heartbeats")}
        self.ops = {op: counter(f"{name}s") for op, name in OPS.items()}

    def process(self, payload: bytes) -> Iterable[Any]:
        self.read.inc()
        try:
            parsed = parse_change(payload, self.tables)
        except InvalidChange as exc:
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter(
                PIPELINE, "Parse change events", exc.reason, str(exc), payload,
                received_at=datetime.now(timezone.utc), source=self.source))
            return
        if isinstance(parsed, str):
            self.skipped[parsed].inc()
            return
        self.changes.inc()
        self.ops[parsed.op].inc()
        yield parsed


class ParseChanges(beam.PTransform):
    """Payloads -> ``(changes, dead_letters)``."""

    def __init__(self, tables: Mapping[str, SourceTable], source: str):
        super().__init__()
        self.tables, self.source = tables, source

    def expand(self, payloads: beam.PCollection):
        parsed = payloads | "Parse" >> beam.ParDo(_ParseChange(self.tables, self.source)).with_outputs(DEAD, main="changes")
        return parsed.changes, parsed[DEAD]


class ReadChanges(beam.PTransform):
    """The payloads of one input: a JSONL file's lines, or a subscription's message data."""

    def __init__(self, kind: str, location: str):
        super().__init__()
        self.kind, self.location = kind, location

    def expand(self, pbegin):
        if self.kind == "file":
            return (pbegin | "Read lines" >> ReadLineBatches(self.location, batch=1000)
                    | "Lines" >> beam.FlatMap(lambda batch: batch))
        return pbegin | "Read from Pub/Sub" >> beam.io.ReadFromPubSub(subscription=self.location)


class _ApplyToDuckDB(beam.DoFn):
    """Applies the bundle's changes to the DuckDB replicas when the bundle ends."""

    def __init__(self, path: str, tables: Mapping[str, SourceTable]):
        self.path, self.tables = path, dict(tables)

    def setup(self) -> None:
        import duckdb

        self.con = duckdb.connect(self.path)
        self.replicas = DuckDBReplicas(self.con, self.path, self.tables)
        self.applied, self.stale = Metrics.counter(PIPELINE, "replica_applied"), Metrics.counter(PIPELINE, "replica_stale")
        self.columns_added = Metrics.counter(PIPELINE, "replica_columns_added")

    def start_bundle(self) -> None:
        self.pending: list[Change] = []

    def process(self, change: Change) -> None:
        self.pending.append(change)
        if len(self.pending) >= 20_000:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self.pending:
            result = self.replicas.apply(self.pending, datetime.now(timezone.utc))
            self.applied.inc(result.applied)
            self.stale.inc(result.stale)
            self.columns_added.inc(result.columns_added)
            self.pending = []

    def teardown(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()


class ApplyReplica(beam.PTransform):
    """Changes of one table -> its ``<table>_current`` replica (DuckDB upsert or BigQuery CDC upsert)."""

    def __init__(self, warehouse: WarehouseSpec, table: SourceTable):
        super().__init__()
        self.warehouse, self.table = warehouse, table

    def expand(self, changes: beam.PCollection):
        if self.warehouse.kind == "duckdb":
            return changes | "Upsert in LSN order" >> beam.ParDo(_ApplyToDuckDB(self.warehouse.path, {self.table.name: self.table}))
        table = self.table
        return (
            changes
            | "CDC upsert rows" >> beam.Map(lambda change: bigquery_cdc_element(change, datetime.now(timezone.utc), table))
            | "Write to BigQuery" >> beam.io.WriteToBigQuery(
                table=f"{self.warehouse.project}:{self.warehouse.dataset}.{replica_name(table.name)}",
                schema=bigquery_replica_schema(table),
                method=beam.io.WriteToBigQuery.Method.STORAGE_WRITE_API,
                use_at_least_once=True, use_cdc_writes=True, primary_key=list(table.primary_key),
                create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND)
        )


def _present(change: Change, derive: Callable[[Change], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The event ``derive`` makes of the change, if it makes one."""
    event = derive(change)
    return [] if event is None else [event]


def _now_changelog_row(change: Change) -> dict[str, Any]:
    return changelog_row(change, datetime.now(timezone.utc))


class CdcJob(beam.PTransform):
    """The whole CDC job from the pipeline's root (see the module docstring)."""

    def __init__(self, source: CdcInput, warehouse: WarehouseSpec, tables: Mapping[str, SourceTable],
                 replicas: Iterable[str], low_stock_threshold: int):
        super().__init__()
        self.source, self.warehouse, self.tables = source, warehouse, dict(tables)
        self.replicas = [t for t in replicas if t in self.tables]
        self.threshold = low_stock_threshold

    def expand(self, pbegin):
        streaming = not self.source.bounded
        sink = {"warehouse": self.warehouse, "streaming": streaming}
        payloads = [pbegin | f"Read {table if table != '*' else 'all'} changes" >> ReadChanges(self.source.kind, location)
                    for table, location in self.source.sources]
        all_payloads = payloads | "All changes" >> beam.Flatten() if len(payloads) > 1 else payloads[0]
        source = ", ".join(location for _, location in self.source.sources)
        changes, dead = all_payloads | "Parse change events" >> ParseChanges(self.tables, source)

        names = sorted(self.tables)
        by_table = dict(zip(names, changes | "Changes by table" >> beam.Partition(
            lambda change, _n: names.index(change.table), len(names))))
        for name in names:
            (by_table[name] | f"{name} changelog rows" >> beam.Map(_now_changelog_row)
             | f"Write {name}_changelog" >> WriteTable(subject="cdc_change", table=f"{name}_changelog", **sink))
            if name in self.replicas:
                by_table[name] | f"Apply to {replica_name(name)}" >> ApplyReplica(self.warehouse, self.tables[name])

        # business events, each from the one table it is about
        derived = (("products", "Price changes", "price_change", price_change),
                   ("products", "Stock alerts", "stock_alert", partial(stock_alert, threshold=self.threshold)),
                   ("orders", "Order status transitions", "order_status_transition", order_status_transition))
        for table, label, subject, derive in derived:
            if table in by_table:
                (by_table[table] | label >> beam.FlatMap(_present, derive)
                 | f"Write {table_name(subject)}" >> WriteTable(subject=subject, **sink))
        dead | "Write dead letters" >> WriteTable(subject="dead_letter", **sink)
        return changes, dead
