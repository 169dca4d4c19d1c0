"""The CDC job: Debezium change events -> changelogs, current-state replicas, business events.

    Read <table> changes (one input per captured table) -> All changes
      -> Parse change events  (tombstones and heartbeats counted; the rest -> dead letters)
      -> Drop redeliveries    (the same table, key and LSN again: counted as duplicates)
      -> Changes by table -> Write <table>_changelog                    (every change)
                          -> Apply to <table>_current                    (the replicated tables)
         products         -> Price changes            -> Write price_changes
                          -> Stock alerts             -> Write stock_alerts
         orders           -> Order status transitions -> Write order_status_transitions
    dead letters -> Write dead letters

Inputs: ``file://DIR`` reads ``DIR/<topic>.jsonl`` of each captured table (what
``streamforge cdc run --output file://DIR`` writes; batch), ``gs://BUCKET/DIR`` the same files
in cloud storage, ``pubsub://.../subscriptions/NAME`` with ``{table}`` in NAME for the
subscription of each table's topic (streaming).
A change is identified by (table, primary key, LSN): redeliveries are dropped before anything
is written (batch: a grouping; streaming: keyed state for ``pipelines.dedup_ttl``), and the
DuckDB tables are keyed by it too, so a redelivered change changes nothing (envelope.py,
replicas.py). In BigQuery a replica is a view over its appended typed changes.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Callable, Iterable, Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_pipelines.cdc.envelope import HEARTBEAT, OPS, TOMBSTONE, Change, InvalidChange, parse_change
from beam_pipelines.cdc.events import changelog_row, order_status_transition, price_change, stock_alert
from beam_pipelines.cdc.replicas import DuckDBReplicas, bigquery_replica_row
from beam_pipelines.common.dead_letters import dead_letter
from beam_pipelines.common.dedup import DropRepeats
from beam_pipelines.common.io import ReadLineBatches, SpecError, WarehouseSpec, remote_path
from beam_pipelines.common.kafka import ReadKafkaBatches
from beam_pipelines.common.kafka_io import ReadKafkaRecords
from beam_pipelines.common.warehouse import (
    WriteTable,
    acquire_writer,
    append_to_bigquery,
    release_writer,
    table_name,
)
from streamforge.cdc.tables import SourceTable
from streamforge.cdc.warehouse import (
    bigquery_replica_schema,
    bigquery_replica_table,
    changelog_name,
    changes_name,
    replica_name,
)
from streamforge.kafka import KafkaUrl, KafkaUrlError, parse_kafka_url
from streamforge.naming import consumer_group

__all__ = [
    "PUBSUB_TABLES_INPUT",
    "ApplyReplica",
    "CdcInput",
    "CdcJob",
    "ParseChanges",
    "ReadChanges",
    "change_identity",
    "parse_cdc_input",
]

PIPELINE = "cdc"
DEAD = "dead_letters"
#: pubsub://projects/P/subscriptions/NAME with {table} in NAME: one subscription per table topic.
PUBSUB_TABLES_INPUT = re.compile(
    r"^pubsub://projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/subscriptions/"
    r"[-\w.~+%]*\{table\}[-\w.~+%]*$"
)


@dataclass(frozen=True)
class CdcInput:
    """Where each captured table's change events are read from."""

    kind: str  # "file", "pubsub" or "kafka"
    sources: tuple[tuple[str, str], ...]  # (table or "*", path, glob, subscription path or Kafka topic)
    kafka: tuple[KafkaUrl, ...] = ()  # Kafka: each source's URL (planned, for a bounded read), in order

    @property
    def bounded(self) -> bool:
        return self.kind == "file" or (self.kind == "kafka" and all(url.bounded for url in self.kafka))

    def kafka_url(self, location: str) -> KafkaUrl | None:
        return next((url for url in self.kafka if url.topic == location), None)

    @property
    def local(self) -> bool:
        """Files on this machine's disk (which remote workers cannot read)."""
        return self.kind == "file" and any("://" not in location for _, location in self.sources)

    def __str__(self) -> str:
        if self.kafka:
            return ", ".join(str(url) for url in self.kafka)
        return ", ".join(
            location if "://" in location or self.kind != "file" else f"file://{location}"
            for _, location in self.sources
        )


def parse_cdc_input(url: str, topics: Mapping[str, str], option: str = "--input") -> CdcInput:
    """``file://DIR``, ``file://GLOB``, ``gs://BUCKET/DIR`` or
    ``pubsub://projects/P/subscriptions/...{table}...`` (for a single table, its subscription);
    ``topics`` maps each table to read to its topic (``cdc.public.products``).

    A remote directory cannot be listed at construction (no credentials there): one table
    is read from ``DIR/<topic>.jsonl``, several from the glob of their topics' common prefix
    (``DIR/cdc.public.*.jsonl``), each change's table then taken from its envelope."""
    remote = remote_path(url, option)
    if remote is not None:
        names = sorted(topics.values())
        if remote.endswith(".jsonl") or any(c in remote for c in "*?["):
            return CdcInput("file", (("*", remote),))
        if len(names) == 1:
            return CdcInput("file", ((next(iter(topics)), FileSystems.join(remote, f"{names[0]}.jsonl")),))
        return CdcInput("file", (("*", FileSystems.join(remote, f"{os.path.commonprefix(names)}*.jsonl")),))
    if url.startswith("file://"):
        location = url[len("file://") :]
        if os.path.isdir(location):
            found = tuple(
                (t, os.path.join(location, f"{topic}.jsonl"))
                for t, topic in topics.items()
                if os.path.isfile(os.path.join(location, f"{topic}.jsonl"))
            )
            if not found:
                raise SpecError(f"{option} {url}: no change files ({', '.join(f'{t}.jsonl' for t in topics.values())})")
            return CdcInput("file", found)
        if not glob.glob(location):
            raise SpecError(f"{option} {url}: no such file or directory")
        return CdcInput("file", (("*", location),))
    if url.startswith("kafka://"):
        try:
            kafka = parse_kafka_url(url, option, consumer_group("cdc"))
        except KafkaUrlError as exc:
            raise SpecError(str(exc)) from None
        if kafka.topic:
            table = next((t for t, topic in topics.items() if topic == kafka.topic), None)
            if table is None or len(topics) > 1:
                raise SpecError(
                    f"{option} {kafka}: give kafka://HOST:PORT without a topic: each captured table is "
                    f"read from its topic in the Debezium properties ({', '.join(sorted(topics.values()))})"
                )
        return CdcInput(
            "kafka",
            tuple((t, topic) for t, topic in topics.items()),
            tuple(kafka.with_topic(topic) for topic in topics.values()),
        )
    if url.startswith("pubsub://"):
        path = url[len("pubsub://") :]
        if "{table}" not in path and len(topics) == 1 and path.startswith("projects/") and "/subscriptions/" in path:
            return CdcInput("pubsub", ((next(iter(topics)), path),))  # one table: its subscription
        if not PUBSUB_TABLES_INPUT.match(url):
            raise SpecError(
                f"{option} {url}: expected pubsub://projects/P/subscriptions/NAME with {{table}} in NAME "
                "(one subscription per table topic), e.g. pubsub://projects/P/subscriptions/cdc-{table}"
            )
        return CdcInput("pubsub", tuple((t, path.replace("{table}", t)) for t in topics))
    raise SpecError(
        f"{option} {url}: expected file://DIR or gs://BUCKET/DIR (of cdc run's JSONL files), "
        "pubsub://projects/P/subscriptions/...{table} or kafka://HOST:PORT[?until=end]"
    )


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
            yield beam.pvalue.TaggedOutput(
                DEAD,
                dead_letter(
                    PIPELINE,
                    "Parse change events",
                    exc.reason,
                    str(exc),
                    payload,
                    received_at=datetime.now(timezone.utc),
                    source=self.source,
                ),
            )
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
        parsed = payloads | "Parse" >> beam.ParDo(_ParseChange(self.tables, self.source)).with_outputs(
            DEAD, main="changes"
        )
        return parsed.changes, parsed[DEAD]


class ReadChanges(beam.PTransform):
    """The payloads of one input: a JSONL file's lines, a Kafka topic's values, or a
    subscription's or topic's message data (from ``local_feed`` on the local streaming runner,
    as io.ReadMessages). A Kafka tombstone (no value) becomes ``null``, as in the files."""

    def __init__(self, kind: str, location: str, local_feed: Any = None, kafka: KafkaUrl | None = None):
        super().__init__()
        self.kind, self.location, self.local_feed, self.kafka = kind, location, local_feed, kafka

    def expand(self, pbegin):
        if self.kind == "file":
            return (
                pbegin
                | "Read lines" >> ReadLineBatches(self.location, batch=1000)
                | "Lines" >> beam.FlatMap(lambda batch: batch)
            )
        if self.kind == "kafka" and self.kafka is not None and self.kafka.bounded:
            return (
                pbegin
                | "Read Kafka" >> ReadKafkaBatches(self.kafka, batch=1000)
                | "Values" >> beam.FlatMap(lambda batch: [item[0] or b"null" for item in batch])
            )
        if self.local_feed is not None:
            return self.local_feed.output(self.location) | "Message data" >> beam.Map(
                lambda message: message[0] or b"null"
            )
        if self.kind == "kafka":
            return (
                pbegin
                | "Read Kafka" >> ReadKafkaRecords(self.kafka)
                | "Values" >> beam.Map(lambda message: message[0] or b"null")
            )
        return pbegin | "Read from Pub/Sub" >> beam.io.ReadFromPubSub(subscription=self.location)


_replicas: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], DuckDBReplicas]] = weakref.WeakKeyDictionary()
_replicas_lock = threading.Lock()


def _replicas_of(writer: Any, path: str, tables: Mapping[str, SourceTable]) -> DuckDBReplicas:
    """The replicas of ``tables`` on this writer's connection, made once per writer: the local
    runner calls ``setup`` for every bundle, and making them creates the tables and reads their
    columns (a third of the CDC job's worker thread at 5 transactions/s)."""
    with _replicas_lock:
        made = _replicas.setdefault(writer, {})
        key = tuple(sorted(tables))
        if key not in made:
            with writer.lock:
                made[key] = DuckDBReplicas(writer.connection, path, tables)
        return made[key]


class _ApplyToDuckDB(beam.DoFn):
    """Applies the bundle's changes to the DuckDB replicas when the bundle ends."""

    def __init__(self, path: str, tables: Mapping[str, SourceTable]):
        self.path, self.tables = path, dict(tables)

    def setup(self) -> None:
        self.writer = acquire_writer(self.path)
        self.replicas = _replicas_of(self.writer, self.path, self.tables)
        self.applied, self.stale = (
            Metrics.counter(PIPELINE, "replica_applied"),
            Metrics.counter(PIPELINE, "replica_stale"),
        )
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
            with self.writer.lock:
                result = self.replicas.apply(self.pending, datetime.now(timezone.utc))
                self.writer.wrote()
            self.applied.inc(result.applied)
            self.stale.inc(result.stale)
            self.columns_added.inc(result.columns_added)
            self.pending = []

    def teardown(self) -> None:
        if getattr(self, "writer", None) is not None:
            release_writer(self.path)
            self.writer = None


class ApplyReplica(beam.PTransform):
    """Changes of one table -> its ``<table>_current`` replica: a DuckDB upsert in LSN order, or
    in BigQuery an append to ``<table>_current_changes`` read by the ``<table>_current`` view
    (replicas.py)."""

    def __init__(self, warehouse: WarehouseSpec, table: SourceTable, *, streaming: bool):
        super().__init__()
        self.warehouse, self.table, self.streaming = warehouse, table, streaming

    def expand(self, changes: beam.PCollection):
        if self.warehouse.kind == "duckdb":
            changes | "Upsert in LSN order" >> beam.ParDo(
                _ApplyToDuckDB(self.warehouse.path, {self.table.name: self.table})
            )
            return None
        return append_to_bigquery(
            changes | "Typed change rows" >> beam.ParDo(_ReplicaChangeRow(self.table)),
            self.warehouse,
            changes_name(self.table.name),
            bigquery_replica_schema(self.table)["fields"],
            bigquery_replica_table(self.table),
            streaming=self.streaming,
            pipeline=PIPELINE,
            label="Append to BigQuery",
        )


class _ReplicaChangeRow(beam.DoFn):
    """A change as its row of ``<table>_current_changes``: every change is appended (the
    ``<table>_current`` view picks the latest), so BigQuery counts appended, not applied or stale."""

    def __init__(self, table: SourceTable):
        self.table = table
        self.appended = Metrics.counter(PIPELINE, "replica_appended")

    def process(self, change: Change) -> Iterable[dict[str, Any]]:
        self.appended.inc()
        yield bigquery_replica_row(change, datetime.now(timezone.utc), self.table)


def change_identity(change: Change) -> str:
    """What a redelivered change repeats: its table, primary key and LSN."""
    return f"{change.table}\x1f{change.key_json}\x1f{change.lsn}"


def _present(change: Change, derive: Callable[[Change], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The event ``derive`` makes of the change, if it makes one."""
    event = derive(change)
    return [] if event is None else [event]


def _now_changelog_row(change: Change) -> dict[str, Any]:
    return changelog_row(change, datetime.now(timezone.utc))


class CdcJob(beam.PTransform):
    """The whole CDC job from the pipeline's root (see the module docstring).

    ``dedup_ttl``: how long a streaming job remembers a change's identity to drop its
    redeliveries (Debezium is at-least-once; Debezium Server sets no message attribute that
    Pub/Sub's ``id_label`` could use, so keyed state does it on every runner)."""

    def __init__(
        self,
        source: CdcInput,
        warehouse: WarehouseSpec,
        tables: Mapping[str, SourceTable],
        replicas: Iterable[str],
        low_stock_threshold: int,
        dedup_ttl: timedelta,
        local_feed: Any = None,
    ):
        super().__init__()
        self.source, self.warehouse, self.tables, self.local_feed = source, warehouse, dict(tables), local_feed
        self.replicas = [t for t in replicas if t in self.tables]
        self.threshold, self.dedup_ttl = low_stock_threshold, dedup_ttl

    def expand(self, pbegin):
        streaming = not self.source.bounded
        sink = {"warehouse": self.warehouse, "streaming": streaming, "pipeline": PIPELINE}
        refused: list[beam.PCollection] = []  # rows the warehouse refused, as dead letters
        payloads = [
            pbegin
            | f"Read {table if table != '*' else 'all'} changes"
            >> ReadChanges(self.source.kind, location, self.local_feed, self.source.kafka_url(location))
            for table, location in self.source.sources
        ]
        all_payloads = payloads | "All changes" >> beam.Flatten() if len(payloads) > 1 else payloads[0]
        source = ", ".join(location for _, location in self.source.sources)
        parsed, dead = all_payloads | "Parse change events" >> ParseChanges(self.tables, source)
        changes = parsed | "Drop redeliveries" >> DropRepeats(
            change_identity,
            streaming=streaming,
            ttl=self.dedup_ttl,
            counter=(PIPELINE, "duplicates"),
            key_label="Key by table, key and LSN",
        )

        names = sorted(self.tables)
        by_table = dict(
            zip(
                names,
                changes
                | "Changes by table" >> beam.Partition(lambda change, _n: names.index(change.table), len(names)),
            )
        )
        for name in names:
            refused.append(
                by_table[name]
                | f"{name} changelog rows" >> beam.Map(_now_changelog_row)
                | f"Write {name}_changelog" >> WriteTable(subject="cdc_change", table=changelog_name(name), **sink)
            )
            if name in self.replicas:
                refused.append(
                    by_table[name]
                    | f"Apply to {replica_name(name)}"
                    >> ApplyReplica(self.warehouse, self.tables[name], streaming=streaming)
                )

        # business events, each from the one table it is about
        derived = (
            ("products", "Price changes", "price_change", price_change),
            ("products", "Stock alerts", "stock_alert", partial(stock_alert, threshold=self.threshold)),
            ("orders", "Order status transitions", "order_status_transition", order_status_transition),
        )
        for table, label, subject, derive in derived:
            if table in by_table:
                refused.append(
                    by_table[table]
                    | label >> beam.FlatMap(_present, derive)
                    | f"Write {table_name(subject)}" >> WriteTable(subject=subject, **sink)
                )
        refused = [r for r in refused if r is not None]
        if refused:
            dead = [dead, *refused] | "Dead letters and refused rows" >> beam.Flatten()
        dead | "Write dead letters" >> WriteTable(subject="dead_letter", **sink)
        return changes, dead
