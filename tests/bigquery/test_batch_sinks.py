"""`run all` in batch from gs:// objects (the Cloud Storage emulator) into BigQuery (the BigQuery
emulator), through the production sinks (WriteToBigQuery's load jobs into the tables `pulumi up`
declares), against the same events run into DuckDB: every table the same, to the cent, and
`streamforge report` printing the same summary from both.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.bigquery import (
    RESULT_TABLES,
    DuckDBWarehouse,
    bigquery_client,
    columns_of,
    compared,
    upload,
    view_rows,
)
from tests.support.cli import run_entry_point

pytestmark = [pytest.mark.bigquery, pytest.mark.slow]

SIMULATION = ("--duration", "30m", "--seed", "11", "--malformed", "0.01", "--duplicates", "0.01")


@pytest.fixture(scope="module")
def batch(google_cloud, tmp_path_factory: pytest.TempPathFactory):
    if not google_cloud.linked:
        pytest.skip("the BigQuery emulator given does not read the storage emulator's objects (load jobs)")
    tmp = tmp_path_factory.mktemp("bigquery-batch")
    files = tmp / "events"
    run_entry_point("simulate", "--output", f"file://{files}", *SIMULATION, "-q")
    bucket = f"events-{uuid.uuid4().hex[:8]}"
    events = upload(google_cloud.storage, bucket, files, "simulated")
    project = f"batch-{uuid.uuid4().hex[:8]}"
    warehouse = f"bigquery://{project}.analytics"
    emulators = {"STORAGE_EMULATOR_HOST": google_cloud.storage, "BIGQUERY_EMULATOR_HOST": google_cloud.bigquery}
    to_bigquery = run_entry_point(
        "run",
        "all",
        "--input",
        events,
        "--warehouse",
        warehouse,
        f"--temp_location=gs://{bucket}/tmp",
        env=emulators,
        timeout=600,
    )
    duckdb_file = tmp / "warehouse.duckdb"
    to_duckdb = run_entry_point(
        "run", "all", "--input", f"file://{files}", "--warehouse", f"duckdb://{duckdb_file}", timeout=600
    )
    reports = {
        name: run_entry_point(
            "report", "--warehouse", where, "--labels", str(files / "fraud_labels.jsonl"), env=emulators
        )
        for name, where in (("bigquery", warehouse), ("duckdb", str(duckdb_file)))
    }
    local = DuckDBWarehouse(duckdb_file)
    yield {
        "client": bigquery_client(google_cloud.bigquery, project),
        "dataset": f"{project}.analytics",
        "duckdb": local,
        "runs": (to_bigquery, to_duckdb),
        "reports": reports,
    }
    local.close()


def test_every_result_table_equals_duckdb_to_the_cent(batch) -> None:
    for table, subject in RESULT_TABLES.items():
        columns = columns_of(subject)
        rows, differences = compared(
            view_rows(batch["client"], batch["dataset"], f"{table}_current", columns),
            batch["duckdb"].rows(table, columns),
        )
        assert differences == [], table
        assert rows > 0, table
    # a load job appends each row once: the table itself holds what its view does
    ((sessions,),) = batch["duckdb"].connection.execute("SELECT count(*) FROM user_sessions").fetchall()
    assert len(view_rows(batch["client"], batch["dataset"], "user_sessions", ["session_id"])) == sessions


def test_dead_letters_are_the_same_rows(batch) -> None:
    columns = columns_of("dead_letter")
    rows, differences = compared(
        view_rows(batch["client"], batch["dataset"], "dead_letter", columns),
        batch["duckdb"].rows("dead_letter", columns),
    )
    assert differences == [] and rows > 0


def test_the_run_counts_are_the_same_and_add_up(batch) -> None:
    to_bigquery, to_duckdb = batch["runs"]
    assert to_bigquery.stdout == to_duckdb.stdout
    assert "dead-lettered" in to_bigquery.stdout


def test_report_prints_the_same_summary_from_both_warehouses(batch) -> None:
    on_bigquery, on_duckdb = batch["reports"]["bigquery"].stdout, batch["reports"]["duckdb"].stdout
    assert "the current rows of each table" in on_bigquery.splitlines()[0]
    assert on_bigquery.split("\n", 1)[1] == on_duckdb
    assert "Fraud alerts against the injected ground truth" in on_duckdb
