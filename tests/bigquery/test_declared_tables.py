"""The warehouse is what the plan declares, and what BigQuery refuses is a dead letter.

`streamforge warehouse create` (and `run`, before it starts) makes the dataset from the
declarations `pulumi up` deploys; a table that has drifted from them stops both with every
difference named. A row BigQuery refuses while the job runs (its table changed under the job)
goes to the dead-letter table with BigQuery's reason, is counted, and is not retried forever.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.cloud import bigquery as bq

from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import load_config
from streamforge.schemas import get_schema
from streamforge.services import stop_process
from streamforge.timeutil import format_timestamp
from streamforge.warehouse_tables import captured_tables, warehouse_tables
from tests.support.bigquery import analytics_inputs, bigquery_client, start_streaming_job, view_rows
from tests.support.cli import run_entry_point, stop_entry_point, wait_while_running
from tests.support.samples import sample

pytestmark = [pytest.mark.bigquery, pytest.mark.slow]


def _drift(client: bq.Client, table: str, column: str, kind: str) -> None:
    """Replace ``table`` by one whose ``column`` has type ``kind`` (someone changed it by hand)."""
    old = client.get_table(table)
    schema = [bq.SchemaField(f.name, kind, f.mode) if f.name == column else f for f in old.schema]
    client.delete_table(table)
    client.create_table(bq.Table(table, schema=schema))


def test_warehouse_create_makes_what_the_plan_declares_and_stops_at_a_drift(bigquery: str, tmp_path: Path) -> None:
    project = f"declared-{uuid.uuid4().hex[:8]}"
    url, env = f"bigquery://{project}.analytics", {"BIGQUERY_EMULATOR_HOST": bigquery}
    client = bigquery_client(bigquery, project)
    declared = warehouse_tables(load_config(), captured_tables(DebeziumServerConfig.load()))

    first = run_entry_point("warehouse", "create", url, env=env)
    assert f"{len(declared)} tables and views declared, {len(declared)} created" in first.stdout
    assert {t.table_id for t in client.list_tables(f"{project}.analytics")} == {s.table_id for s in declared}
    again = run_entry_point("warehouse", "create", url, env=env)
    assert "0 created; everything was there and matches its declaration" in again.stdout

    _drift(client, f"{project}.analytics.user_sessions", "device_type", "INTEGER")
    refused = run_entry_point("warehouse", "create", url, env=env, check=False)
    message = "user_sessions.device_type: is INTEGER REQUIRED, declared STRING REQUIRED"
    assert refused.returncode == 1 and message in refused.stderr
    run_entry_point("simulate", "--output", f"file://{tmp_path}", "--duration", "2m", "-q")
    run = run_entry_point("run", "all", "--input", f"file://{tmp_path}", "--warehouse", url, env=env, check=False)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert client.get_table(f"{project}.analytics.user_sessions").num_rows == 0  # nothing written


@pytest.mark.pubsub
def test_a_row_bigquery_refuses_is_a_dead_letter_with_its_reason(
    pubsub: str, bigquery: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = f"refused-{uuid.uuid4().hex[:8]}"
    env = {"PUBSUB_EMULATOR_HOST": pubsub, "BIGQUERY_EMULATOR_HOST": bigquery}
    run_entry_point("pubsub", "create", "--project", project, "--no-cdc", env=env)
    client, dataset = bigquery_client(bigquery, project), f"{project}.analytics"
    job, _progress, log = start_streaming_job(
        "all",
        analytics_inputs(project),
        f"bigquery://{dataset}",
        tmp_path,
        env,
    )
    try:
        # the job runs against the declared tables; now someone changes one under it
        _drift(client, f"{dataset}.fraud_alerts", "user_id", "INTEGER")
        from google.cloud import pubsub_v1

        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub)
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(project, load_config().topics.orders)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        schema = get_schema("order_event")
        for i in range(3):  # three orders of one user within seconds: a velocity alert for user "fay"
            order = sample("order_event", event_id=f"o{i}", order_id=f"O{i}", user_id="fay", event_time=now)
            publisher.publish(
                topic,
                schema.to_json(schema.validate(order)),
                event_time=format_timestamp(now + timedelta(seconds=i)),
                encoding="json",
            ).result(timeout=30)
        refused = wait_while_running(
            job,
            log,
            "the refused row in the dead letters",
            lambda: view_rows(
                client,
                dataset,
                "dead_letter",
                ["pipeline", "step", "reason", "error", "payload"],
                "reason LIKE 'bigquery_%'",
            ),
        )
        assert stop_entry_point(job, timeout=120) == 0, log.read_text()[-3000:]  # not retried for ever
    finally:
        stop_process(job)
    ((pipeline, step, reason, error, payload),) = refused
    assert (pipeline, step, reason) == ("all", "Write fraud_alerts", "bigquery_invalid")
    assert "fay" in payload and "user_id" in payload  # the row as it was sent
    # BigQuery's message, as it gave it. (The emulator names the row's first column and value
    # where BigQuery names the column it could not convert: docs/dataflow.md)
    assert error.startswith("BigQuery refused the row for fraud_alerts: ") and "Cannot convert value" in error, error
    assert client.get_table(f"{dataset}.fraud_alerts").num_rows == 0
