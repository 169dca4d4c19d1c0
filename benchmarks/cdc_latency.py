"""CDC latency and throughput: PostgreSQL -> the Debezium connector -> published -> replica row.

    python benchmarks/cdc_latency.py [--updates 1000] [--bulk 50000] [--replica-updates 200]

Starts a PostgreSQL cluster on 127.0.0.1 (wal_level=logical) and prints a table:

1. commit -> change event published: ``--updates`` single-row updates, one transaction each,
   committed one after another; the connector (the embedded engine, in this process, with the
   connector properties of cdc/debezium/application.properties) writes each event to a JSONL
   file and flushes it (``--output file://``). Latency = flush done - commit returned, per change.
2. bulk: one transaction updating ``--bulk`` rows: changes/s from the commit to the last event
   flushed.
3. commit -> replica row: ``streamforge cdc run --output pubsub://`` and the streaming CDC
   job (DirectRunner, products subscription) on a Pub/Sub emulator, both as processes;
   ``--replica-updates`` updates of distinct products at 10/s; latency per row =
   ``_ingested_at - _source_ts`` of the products_current row (commit time in PostgreSQL).

Targets (issue 4): p50 < 50 ms, p99 < 250 ms commit -> published; >= 10,000 changes/s bulk.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import percentile, print_table  # noqa: E402

from streamforge.cdc.config import SCHEMA, DatabaseURL, DebeziumServerConfig, cdc_file  # noqa: E402
from streamforge.cdc.engine import run_engine  # noqa: E402
from streamforge.cdc.outputs import ChangeMessage, FileOutput  # noqa: E402
from streamforge.services import ServerUnavailable, start_postgres, start_pubsub_emulator  # noqa: E402

STREAMFORGE = Path(sys.executable).parent / "streamforge"
# The streaming CDC job on the products subscription only: on the DirectRunner a pull from an
# idle emulator subscription blocks for 30 s, which would stall the job between updates here.
REPLICA_JOB = """
import sys, threading, signal
from beam_pipelines.cdc.pipeline import CdcInput
from streamforge.cdc.tables import load_source_tables
from beam_pipelines.common.io import parse_warehouse
from beam_pipelines.requests import CdcRequest
from beam_pipelines.runner import pipeline_options, run
from streamforge.config import load_config
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
products = {"products": load_source_tables()["products"]}
request = CdcRequest(CdcInput("pubsub", (("products", sys.argv[1]),)), parse_warehouse("duckdb://" + sys.argv[2]),
                     products, load_config())
run(request, pipeline_options(request), should_stop=stop.is_set)
"""


class TimedFileOutput(FileOutput):
    """The file output, noting when each products change was flushed (by its name marker)."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.flushed: dict[str, float] = {}
        self.count = 0
        self.last_at = 0.0

    def publish(self, messages: list[ChangeMessage]) -> None:
        super().publish(messages)
        now = time.perf_counter()
        for message in messages:
            if message.value is not None and message.topic.endswith(".products"):
                self.count += 1
                self.last_at = now
                # the marker of the new row image ("before" holds the previous one)
                marker = message.value.find('"name":"bench-', message.value.find('"after":'))
                if marker >= 0:
                    self.flushed[message.value[marker + 8 : message.value.index('"', marker + 8)]] = now


def connector_benchmark(url: str, work: Path, updates: int, bulk: int) -> list[tuple[str, str]]:
    import psycopg

    config, db = DebeziumServerConfig.load(), DatabaseURL.parse(url)
    output = TimedFileOutput(work / "changes")
    stop = threading.Event()
    engine = threading.Thread(
        target=run_engine, args=(config, db, output, work / "offsets.dat", stop.is_set), daemon=True
    )
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(
            "INSERT INTO products (sku, name, category, price, stock_quantity) SELECT 'BULK-' || n, 'bulk', "
            "'bulk', 1.00, 100 FROM generate_series(1, %s) n",
            (bulk,),
        )
        engine.start()
        deadline = time.monotonic() + 120
        while output.count < bulk + 700:  # the snapshot
            assert time.monotonic() < deadline and engine.is_alive(), "the snapshot did not complete"
            time.sleep(0.05)
        # streaming starts a few seconds after the snapshot ends: wait until a change comes through
        con.execute("UPDATE products SET name = 'bench-warmup' WHERE id = 1")
        while "bench-warmup" not in output.flushed:
            assert time.monotonic() < deadline and engine.is_alive(), "streaming did not start"
            time.sleep(0.01)
        committed: dict[str, float] = {}
        for n in range(updates):
            marker = f"bench-{n}"
            con.execute("UPDATE products SET name = %s WHERE id = %s", (marker, 1 + n % 700))
            committed[marker] = time.perf_counter()
            time.sleep(0.005)  # a steady stream, not a batch
        deadline = time.monotonic() + 60
        while len(output.flushed) < updates + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = [(output.flushed[m] - t) * 1000 for m, t in committed.items() if m in output.flushed]

        before = output.count
        con.execute("UPDATE products SET stock_quantity = stock_quantity + 1 WHERE sku LIKE 'BULK-%'")
        bulk_committed = time.perf_counter()
        deadline = time.monotonic() + 180
        while output.count < before + bulk and time.monotonic() < deadline:
            time.sleep(0.01)
        bulk_seconds = output.last_at - bulk_committed
    stop.set()
    engine.join(60)
    output.close()
    return [
        ("commit -> published, p50", f"{statistics.median(latencies):.1f} ms"),
        ("commit -> published, p99", f"{percentile(latencies, 99):.1f} ms"),
        ("commit -> published, max", f"{max(latencies):.1f} ms ({len(latencies):,} of {updates:,} updates)"),
        (
            f"bulk update of {bulk:,} rows",
            f"{bulk / bulk_seconds:,.0f} changes/s ({bulk_seconds:.2f} s commit -> last)",
        ),
    ]


def replica_benchmark(url: str, work: Path, updates: int) -> list[tuple[str, str]]:
    import duckdb
    import psycopg
    from google.cloud import pubsub_v1

    try:
        emulator_service = start_pubsub_emulator(work / "pubsub-emulator.log")
    except ServerUnavailable as exc:
        return [("commit -> replica row", f"skipped: {exc}")]
    emulator = emulator_service.address
    try:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator
        env = {**os.environ, "PUBSUB_EMULATOR_HOST": emulator}
        project = f"bench-{uuid.uuid4().hex[:6]}"
        config = DebeziumServerConfig.load()
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for qualified in config.tables:
            topic = publisher.create_topic(name=publisher.topic_path(project, config.topic(qualified))).name
            subscriber.create_subscription(
                name=subscriber.subscription_path(project, f"bench-{qualified.split('.')[1]}"), topic=topic
            )
        warehouse = work / "replica.duckdb"
        capture = subprocess.Popen(
            [
                str(STREAMFORGE),
                "cdc",
                "run",
                "-d",
                url,
                "-o",
                f"pubsub://{project}",
                "--offsets",
                str(work / "offsets-pubsub.dat"),
                "-q",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        job = subprocess.Popen(
            [sys.executable, "-c", REPLICA_JOB, f"projects/{project}/subscriptions/bench-products", str(warehouse)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(work / "job.log").open("wb"),
        )
        try:
            time.sleep(40)  # the snapshot (the 700 products) published and applied: a backlog would be measured too
            with psycopg.connect(url, autocommit=True) as con:
                for n in range(updates):
                    con.execute("UPDATE products SET name = %s WHERE id = %s", (f"replica-{n}", 1 + n))
                    time.sleep(0.1)
                time.sleep(15)
        finally:
            for process in (capture, job):
                process.send_signal(signal.SIGINT)
            for process in (capture, job):
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
        if not warehouse.exists():
            return [("commit -> replica row", "failed: " + (work / "job.log").read_text()[-2000:])]
        with duckdb.connect(str(warehouse), read_only=True) as wh:
            latencies = [
                r[0]
                for r in wh.execute(
                    "SELECT epoch_ms(_ingested_at) - epoch_ms(_source_ts) FROM products_current WHERE name LIKE 'replica-%'"
                ).fetchall()
            ]
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        emulator_service.stop()
    if not latencies:
        return [
            (
                "commit -> replica row",
                "no replica rows: the streaming job did not apply the updates: "
                + (work / "job.log").read_text()[-1500:],
            )
        ]
    return [
        ("commit -> replica row, p50", f"{statistics.median(latencies):,.0f} ms"),
        ("commit -> replica row, p99", f"{percentile(latencies, 99):,.0f} ms ({len(latencies)} of {updates} rows)"),
    ]


def _benchmarks(url: str, work: Path, args: argparse.Namespace) -> list[tuple[str, str]]:
    import psycopg

    from streamforge.cdc.setup import prepare_database
    from streamforge.cdc.workload import Workload, init_database

    with psycopg.connect(url) as con:
        init_database(con, cdc_file(SCHEMA).read_text())
        Workload(con, seed=1)  # the catalogue and the customers
        prepare_database(con, DebeziumServerConfig.load(), "postgres")  # `cdc setup`: the publication
    rows = connector_benchmark(url, work, args.updates, args.bulk)
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("SELECT pg_drop_replication_slot(%s)", (DebeziumServerConfig.load().slot_name,))
    if args.replica_updates:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("DELETE FROM products WHERE sku LIKE 'BULK-%'")
        rows += replica_benchmark(url, work, args.replica_updates)
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=50_000)
    parser.add_argument("--replica-updates", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-cdc-bench-") as tmp:
        database = start_postgres(Path(tmp) / "postgres.log")  # a throwaway cluster with logical decoding
        try:
            rows = _benchmarks(database.address, Path(tmp), args)
        finally:
            database.stop(timeout=30, first=signal.SIGINT)  # PostgreSQL's fast shutdown
    print_table(rows)


if __name__ == "__main__":
    main()
