"""`run cdc` into BigQuery (the emulator) through the production sinks: the changelogs, the
business events and, per replicated table, ``<table>_current_changes`` read by the
``<table>_current`` view the plan declares. The changes come from the real connector on a
real PostgreSQL (snapshot, then a workload), with redeliveries and malformed messages among
them, once in batch from gs:// objects and once streaming from the Pub/Sub emulator (published
as Debezium Server publishes them). Each replica view must equal PostgreSQL's table, and every
table must equal what the same changes give in DuckDB.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest

from streamforge.cdc.outputs import ChangeMessage, PubSubOutput
from streamforge.live.progress import read_job_progress
from streamforge.services import stop_process
from tests.support.bigquery import (
    DuckDBWarehouse,
    bigquery_client,
    columns_of,
    compared,
    start_streaming_job,
    upload,
    view_rows,
)
from tests.support.capture import source_rows, start_capture, stop_capture, summary_row
from tests.support.cli import run_entry_point, stop_entry_point, wait_while_running
from tests.support.servers import fresh_database

pytestmark = [pytest.mark.bigquery, pytest.mark.postgres, pytest.mark.pubsub, pytest.mark.slow]

REPLICAS = ("products", "orders", "order_items", "customers")
CHANGELOGS = ("products", "orders", "order_items", "customers", "inventory_movements")
#: the business events: table -> schema
EVENTS = {
    "price_changes": "price_change",
    "stock_alerts": "stock_alert",
    "order_status_transitions": "order_status_transition",
}
MALFORMED = [b"{not json", b"[1, 2]"]


def _lines(changes: Path, table: str) -> list[bytes]:
    path = changes / f"cdc.public.{table}.jsonl"
    return path.read_bytes().splitlines() if path.exists() else []


def _wait(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _capture(cluster: str, tmp: Path) -> tuple[Path, dict[str, tuple[list[str], list[tuple]]]]:
    """The connector's files for a snapshot and a workload on a new database, with redeliveries
    and malformed lines added; and the source tables as the replicas must hold them."""
    changes = tmp / "changes"
    with fresh_database(cluster) as url:
        run_entry_point("cdc", "workload", "--database", url, "--operations", "150", "--rate", "0", "--seed", "1")
        capture = start_capture(url, f"file://{changes}", tmp / "offsets.dat")
        try:
            _wait(lambda: len(_lines(changes, "customers")) >= 2000, "the snapshot")
            run_entry_point("cdc", "workload", "--database", url, "--operations", "300", "--rate", "0", "--seed", "2")
            with psycopg.connect(url) as pg:
                pg.execute("UPDATE customers SET city = 'marker' WHERE id = 1")
            _wait(lambda: any(b'"marker"' in line for line in _lines(changes, "customers")[-20:]), "the marker")
        finally:
            assert stop_capture(capture) == 0
        with psycopg.connect(url) as pg:
            sources = {table: source_rows(pg, table, tmp / "offsets.dat") for table in REPLICAS}
    rng = random.Random(3)
    for table in ("orders", "products"):  # at-least-once: some changes delivered again, out of order
        lines = _lines(changes, table)
        with (changes / f"cdc.public.{table}.jsonl").open("ab") as f:
            f.write(b"\n".join(rng.sample(lines, 40) + MALFORMED) + b"\n")
    return changes, sources


def _publish(changes: Path, project: str) -> int:
    """Every line of the files on its table's topic, keyed by the primary key, as Debezium Server
    publishes (the production output class); returns how many messages."""
    files = sorted(changes.glob("cdc.public.*.jsonl"))
    output = PubSubOutput(project, [f.stem for f in files], ordering=True, null_key="default")
    try:
        for path in files:
            messages = []
            for line in path.read_bytes().splitlines():
                try:
                    event = orjson.loads(line)
                    image = event["after"] or event["before"]
                    key = orjson.dumps({"id": image["id"]}).decode()
                except (orjson.JSONDecodeError, TypeError, KeyError):
                    key = None
                messages.append(ChangeMessage(path.stem, key, line.decode()))
            output.publish(messages)
        return sum(output.published.values())
    finally:
        output.close()


def _stream(pubsub: str, bigquery: str, project: str, changes: Path, tmp: Path) -> None:
    """`run cdc` streaming from the CDC subscriptions `pubsub create` made, until it has taken
    every published message; then Ctrl-C (a drain)."""
    env = {"PUBSUB_EMULATOR_HOST": pubsub, "BIGQUERY_EMULATOR_HOST": bigquery}
    created = run_entry_point("pubsub", "create", "--project", project, env=env)
    (subscriptions,) = re.findall(r"run cdc --input '([^']+)'", created.stdout)
    job, progress, log = start_streaming_job("cdc", ["--input", subscriptions], f"bigquery://{project}.cdc", tmp, env)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PUBSUB_EMULATOR_HOST", pubsub)
            published = _publish(changes, project)
        wait_while_running(
            job, log, "the job to take every message", lambda: read_job_progress(progress).acked >= published, 300
        )
        assert stop_entry_point(job) == 0, log.read_text()[-3000:]
    finally:
        stop_process(job)


@pytest.fixture(scope="module")
def runs(postgres_cluster, pubsub, google_cloud, tmp_path_factory):
    if not google_cloud.linked:
        pytest.skip("the BigQuery emulator given does not read the storage emulator's objects (load jobs)")
    tmp = tmp_path_factory.mktemp("bigquery-cdc")
    changes, sources = _capture(postgres_cluster, tmp)
    bucket = f"changes-{uuid.uuid4().hex[:8]}"
    emulators = {"STORAGE_EMULATOR_HOST": google_cloud.storage, "BIGQUERY_EMULATOR_HOST": google_cloud.bigquery}
    batch_project, streaming_project = f"cdc-batch-{uuid.uuid4().hex[:6]}", f"cdc-live-{uuid.uuid4().hex[:6]}"
    to_bigquery = run_entry_point(
        "run",
        "cdc",
        "--input",
        upload(google_cloud.storage, bucket, changes, "changes"),
        "--warehouse",
        f"bigquery://{batch_project}.cdc",
        f"--temp_location=gs://{bucket}/tmp",
        env=emulators,
        timeout=600,
    )
    duckdb_file = tmp / "warehouse.duckdb"
    to_duckdb = run_entry_point(
        "run", "cdc", "--input", f"file://{changes}", "--warehouse", f"duckdb://{duckdb_file}", timeout=600
    )
    _stream(pubsub, google_cloud.bigquery, streaming_project, changes, tmp)
    local = DuckDBWarehouse(duckdb_file)
    yield {
        "sources": sources,
        "duckdb": local,
        "runs": (to_bigquery, to_duckdb),
        "bigquery": {
            "batch": (bigquery_client(google_cloud.bigquery, batch_project), f"{batch_project}.cdc"),
            "streaming": (bigquery_client(google_cloud.bigquery, streaming_project), f"{streaming_project}.cdc"),
        },
    }
    local.close()


@pytest.mark.parametrize("mode", ["batch", "streaming"])
def test_every_replica_view_equals_postgresql(runs, mode: str) -> None:
    client, dataset = runs["bigquery"][mode]
    for table in REPLICAS:
        names, source = runs["sources"][table]
        replica = view_rows(client, dataset, f"{table}_current", names, where="NOT _deleted")
        assert replica == sorted(source, key=repr), table
        assert len(replica) > 0, table


@pytest.mark.parametrize("mode", ["batch", "streaming"])
def test_changelogs_events_and_dead_letters_equal_duckdb(runs, mode: str) -> None:
    client, dataset = runs["bigquery"][mode]
    tables = {f"{t}_changelog": "cdc_change" for t in CHANGELOGS} | EVENTS
    for table, subject in tables.items():
        columns = columns_of(subject)
        rows, differences = compared(view_rows(client, dataset, table, columns), runs["duckdb"].rows(table, columns))
        assert differences == [], table
        assert rows > 0 or table == "stock_alerts", table
    dead = columns_of("dead_letter", leave_out=("source",))  # (the same malformed lines are in two files)
    dead_letters = view_rows(client, dataset, "dead_letter", dead)
    assert dead_letters == runs["duckdb"].rows("dead_letter", dead) and len(dead_letters) == 2 * len(MALFORMED)


def test_the_batch_run_counts_equal_duckdb_and_every_change_is_appended_once(runs) -> None:
    to_bigquery, to_duckdb = (summary_row(run.stdout) for run in runs["runs"])
    read, changes, redelivered, tombstones, heartbeats, dead_lettered, appended = to_bigquery
    assert to_bigquery[:6] == to_duckdb[:6]
    assert read == changes + tombstones + heartbeats + dead_lettered and dead_lettered == 2 * len(MALFORMED)
    assert redelivered > 60  # of the 80 lines written again (tombstones among them count as tombstones)
    client, dataset = runs["bigquery"]["batch"]
    rows = sum(len(view_rows(client, dataset, f"{t}_current_changes", ["_lsn"])) for t in REPLICAS)
    assert appended == rows  # the redeliveries dropped before the append
    assert "appended" in runs["runs"][0].stdout and "stale" not in runs["runs"][0].stdout
