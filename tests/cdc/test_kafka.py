"""CDC over Kafka: PostgreSQL -> the real Debezium connector (`streamforge cdc run --output
kafka://`) -> Tansu (a topic per table, keyed by primary key, tombstones after deletes) ->
`streamforge run cdc --input kafka://...?until=end` -> DuckDB replicas equal to the source tables."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Iterator

import duckdb
import psycopg
import pytest

from tests.support.capture import source_rows, start_capture, stop_capture, summary_row
from tests.support.cli import run_entry_point
from tests.support.servers import ServerUnavailable, kafka_broker

pytestmark = [pytest.mark.postgres, pytest.mark.kafka, pytest.mark.slow]
REPLICAS = ("products", "orders", "order_items", "customers")


def _values(bootstrap: str, topic: str) -> list[bytes | None]:
    """Every value of ``topic`` so far (None for a tombstone)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-peek",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        values, ended = [], set()
        while len(ended) < len(metadata.partitions):
            message = consumer.poll(2)
            if message is None:
                break
            if message.error():
                ended.add(message.partition())
                continue
            values.append(message.value())
        return values
    finally:
        consumer.close()


def _wait_for(condition, what: str, process, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture()
def kafka() -> Iterator[str]:
    """A broker of its own: the session's broker already holds other tests' cdc.public.* topics."""
    try:
        with kafka_broker() as address:
            yield address
    except ServerUnavailable as exc:
        pytest.skip(f"no Kafka-compatible broker: {exc}")


def test_changes_over_kafka_give_replicas_equal_to_the_source(shop_db: str, kafka: str, tmp_path: Path) -> None:
    run_entry_point("cdc", "workload", "--database", shop_db, "--operations", "200", "--rate", "0", "--seed", "4")
    capture = start_capture(shop_db, f"kafka://{kafka}", tmp_path / "offsets.dat")
    try:
        _wait_for(lambda: len(_values(kafka, "cdc.public.customers")) >= 2000, "the snapshot", capture)
        run_entry_point("cdc", "workload", "--database", shop_db, "--operations", "300", "--rate", "0", "--seed", "5")
        with psycopg.connect(shop_db) as con:  # a cancelled order removed: deletes, each followed by a tombstone
            (order,) = con.execute("SELECT min(id) FROM orders").fetchone()
            con.execute("DELETE FROM order_items WHERE order_id = %s", (order,))
            con.execute("DELETE FROM orders WHERE id = %s", (order,))
        with psycopg.connect(shop_db) as con:
            con.execute("UPDATE customers SET city = 'marker-kafka' WHERE id = 1")  # not hashed
        _wait_for(
            lambda: any(v and b"marker-kafka" in v for v in _values(kafka, "cdc.public.customers")),
            "the marker",
            capture,
        )
    finally:
        assert stop_capture(capture, signal.SIGTERM) == 0
    tombstones = sum(v is None for t in ("orders", "order_items") for v in _values(kafka, f"cdc.public.{t}"))
    warehouse = tmp_path / "warehouse.duckdb"
    job = run_entry_point(
        "run",
        "cdc",
        "--input",
        f"kafka://{kafka}?until=end",
        "--warehouse",
        f"duckdb://{warehouse}",
        env={"COLUMNS": "200"},
    )
    read, changes, _redelivered, job_tombstones, heartbeats, dead, _applied, _stale = summary_row(job.stdout)
    assert read == changes + job_tombstones + heartbeats + dead and dead == 0
    assert job_tombstones >= tombstones > 0  # the deletes' tombstones are read and counted, not dead-lettered
    with duckdb.connect(str(warehouse), read_only=True) as wh, psycopg.connect(shop_db) as pg:
        for table in REPLICAS:  # the personal columns hashed by the connector, as PostgreSQL hashes them
            names, source = source_rows(pg, table, tmp_path / "offsets.dat")
            replica = wh.execute(
                f"SELECT {', '.join(names)} FROM {table}_current WHERE NOT _deleted ORDER BY id"
            ).fetchall()
            assert replica == source and source, table
