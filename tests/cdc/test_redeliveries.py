"""Debezium redelivers after a crash: the CDC job drops a change seen before (streaming: keyed
state for the TTL), and in BigQuery the replica view keeps the latest change per key exactly
as the DuckDB upsert does."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import apache_beam as beam
import duckdb
import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.cdc.envelope import parse_change
from beam_pipelines.cdc.pipeline import ParseChanges, change_identity
from beam_pipelines.cdc.replicas import DuckDBReplicas, bigquery_replica_row
from beam_pipelines.common.dedup import DropRepeats
from beam_pipelines.runner import local_runner_tuning
from streamforge.cdc.tables import load_source_tables
from streamforge.cdc.warehouse import bigquery_replica_schema, changes_name, replica_view_sql
from tests.support.changes import envelope, product

TABLES = load_source_tables()
PRODUCTS = {"products": TABLES["products"]}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
_seen: list[Any] = []


class _Keep(beam.DoFn):
    def process(self, change: Any) -> None:
        _seen.append((change.key, change.lsn, change.row["price"]))


def test_streaming_drops_redelivered_changes_for_the_ttl() -> None:
    first = envelope("products", "u", product(id=1, price="10.00"), product(id=1, price="11.00"), 100)
    second = envelope("products", "u", product(id=1, price="11.00"), product(id=1, price="12.00"), 101)
    other_row = envelope("products", "u", product(id=2, price="10.00"), product(id=2, price="13.00"), 100)
    at = lambda minutes: minutes * 60  # noqa: E731 - event seconds
    stream = (
        BeamTestStream()
        .add_elements(
            [TimestampedValue(first, at(0)), TimestampedValue(second, at(0)), TimestampedValue(other_row, at(0))]
        )
        .advance_watermark_to(at(5))
        .add_elements([TimestampedValue(first, at(5)), TimestampedValue(second, at(6))])  # a crash's replay
        .advance_watermark_to(at(120))
        .add_elements([TimestampedValue(first, at(121))])  # long after the TTL: forgotten, passes again
        .advance_watermark_to_infinity()
    )
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    _seen.clear()
    pipeline = beam.Pipeline(runner="DirectRunner", options=options)
    changes, _dead = pipeline | stream | ParseChanges(PRODUCTS, "test")
    (
        changes
        | DropRepeats(change_identity, streaming=True, ttl=timedelta(hours=1), counter=("cdc", "duplicates"))
        | beam.ParDo(_Keep())
    )
    with local_runner_tuning():
        result = pipeline.run()
        result.wait_until_finish()
    assert sorted(_seen) == [
        ((1,), 100, Decimal("11.00")),
        ((1,), 100, Decimal("11.00")),
        ((1,), 101, Decimal("12.00")),
        ((2,), 100, Decimal("13.00")),
    ]
    # (the streaming DirectRunner reports only the first bundles' counters: the batch end-to-end
    # test checks the duplicates counter against the redeliveries in the files)


def test_the_bigquery_replica_view_equals_the_duckdb_upsert_whatever_the_deliveries(tmp_path) -> None:
    table = TABLES["products"]
    history = [
        envelope("products", "c", None, product(id=1, price="10.00"), 100),
        envelope("products", "c", None, product(id=2, price="20.00"), 101),
        envelope("products", "u", product(id=1, price="10.00"), product(id=1, price="11.00"), 102),
        envelope("products", "d", product(id=2, price="20.00"), None, 103),
        envelope("products", "u", product(id=1, price="11.00"), product(id=1, price="12.00", stock_quantity=4), 104),
        envelope("products", "c", None, product(id=3, price="30.00", weight_kg=1.5), 105),
    ]
    fields = {f["name"] for f in bigquery_replica_schema(table)["fields"]}
    rng = random.Random(11)
    for attempt in range(10):
        deliveries = [parse_change(p, PRODUCTS) for p in history + rng.sample(history, rng.randint(0, len(history)))]
        rng.shuffle(deliveries)
        rows = [bigquery_replica_row(change, NOW, table) for change in deliveries]
        assert all(set(row) <= fields and "weight_kg" not in row for row in rows)  # BigQuery rejects unknown fields
        jsonl = tmp_path / f"changes{attempt}.jsonl"
        jsonl.write_bytes(b"\n".join(orjson.dumps(row) for row in rows))
        path = str(tmp_path / f"w{attempt}.duckdb")
        with duckdb.connect(path) as con:
            con.execute(f"CREATE TABLE {changes_name('products')} AS SELECT * FROM read_json_auto('{jsonl}')")
            view = con.execute(
                f"SELECT id, price, stock_quantity, _lsn, _deleted FROM "
                f"({replica_view_sql(table, changes_name('products'))}) ORDER BY id"
            ).fetchall()
            DuckDBReplicas(con, path, PRODUCTS).apply(deliveries, NOW)
            upserted = con.execute(
                "SELECT id, price, stock_quantity, _lsn, _deleted FROM products_current ORDER BY id"
            ).fetchall()
        assert (
            [(i, Decimal(str(p)), s, lsn, d) for i, p, s, lsn, d in view]
            == upserted
            == [
                (1, Decimal("12.00"), 4, 104, False),
                (2, Decimal("20.00"), 50, 103, True),
                (3, Decimal("30.00"), 50, 105, False),
            ]
        )
    assert change_identity(deliveries[0]).count("\x1f") == 2
