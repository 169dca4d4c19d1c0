"""BigQuery away for 30 s in the middle of a live run: the streaming job (a process of its own,
as `streamforge run` starts it) waits: its inserts retry and hold their bundle, so the messages
wait in the subscription. Then the tables' current views end up with exactly what the same
messages give in DuckDB: nothing lost, nothing doubled.

The emulator keeps its data in files (its persistent mode), is stopped with its whole process
group, and is started again on the same port and data, as a BigQuery that was unreachable.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from streamforge.live.progress import read_job_progress
from streamforge.services import free_port, start_bigquery_emulator, stop_process
from tests.support.bigquery import (
    RESULT_TABLES,
    DuckDBWarehouse,
    analytics_inputs,
    bigquery_client,
    columns_of,
    compared,
    start_streaming_job,
    view_rows,
)
from tests.support.cli import run_entry_point, start_entry_point, stop_entry_point, wait_while_running

pytestmark = [pytest.mark.bigquery, pytest.mark.pubsub, pytest.mark.slow, pytest.mark.timeout(600)]

OUTAGE_S = 30


def _published(record: Path) -> int:
    return sum(sum(1 for _ in (record / f"{s}.jsonl").open("rb")) for s in ("clickstream", "orders"))


def test_an_outage_of_30_s_loses_and_doubles_nothing(pubsub: str, tmp_path: Path) -> None:
    project = f"outage-{uuid.uuid4().hex[:8]}"
    data, port = tmp_path / "bigquery", free_port()
    data.mkdir()
    emulator = start_bigquery_emulator(tmp_path / "bigquery-1.log", port, project, data=data)
    env = {"PUBSUB_EMULATOR_HOST": pubsub, "BIGQUERY_EMULATOR_HOST": f"http://{emulator.address}"}
    processes: list[subprocess.Popen] = []
    try:
        run_entry_point("pubsub", "create", "--project", project, "--no-cdc", env=env)
        record = tmp_path / "published"
        job, progress, log = start_streaming_job(
            "all",
            analytics_inputs(project),
            f"bigquery://{project}.analytics",
            tmp_path,
            env,
        )
        processes.append(job)
        simulator = start_entry_point(
            "simulate",
            *("--output", f"pubsub://{project}", "--rate", "150", "--duration", "80s", "--record", str(record)),
            *("--malformed", "0.01", "--duplicates", "0.01", "-q"),
            log=tmp_path / "simulator.log",
            env=env,
        )
        processes.append(simulator)

        time.sleep(20)
        emulator.stop()  # BigQuery unreachable: the inserts fail with connection errors
        down = datetime.now(timezone.utc)
        time.sleep(OUTAGE_S)
        up = datetime.now(timezone.utc)
        emulator = start_bigquery_emulator(tmp_path / "bigquery-2.log", port, project, data=data)
        assert simulator.wait(timeout=120) == 0, (tmp_path / "simulator.log").read_text()[-3000:]
        published = _published(record)
        wait_while_running(
            job, log, "the job to take every message", lambda: read_job_progress(progress).acked >= published, 180
        )
        assert stop_entry_point(job) == 0, log.read_text()[-3000:]  # Ctrl-C: drain

        duckdb_file = tmp_path / "warehouse.duckdb"
        run_entry_point(
            "run", "all", "--input", f"file://{record}", "--warehouse", f"duckdb://{duckdb_file}", timeout=300
        )
        local = DuckDBWarehouse(duckdb_file)
        client = bigquery_client(f"http://{emulator.address}", project)
        dataset = f"{project}.analytics"
        for table, subject in RESULT_TABLES.items():
            columns = columns_of(subject, leave_out=("pane_index", "pane_timing"))
            rows, differences = compared(
                view_rows(client, dataset, f"{table}_current", columns), local.rows(table, columns)
            )
            assert differences == [], table
            assert rows > 0 or table == "fraud_alerts", table
        dead = columns_of("dead_letter", leave_out=("source",))
        assert set(view_rows(client, dataset, "dead_letter", dead)) == set(local.rows("dead_letter", dead))
        # the job read on both sides of the outage; while BigQuery was away its inserts retried and
        # held their bundle, so it took (almost) no message then: they waited in the subscription
        times = [t for (t,) in view_rows(client, dataset, "dead_letter", ["received_at"])]
        before, after = sum(t < down for t in times), sum(t > up for t in times)
        assert before > 0 and after > 0 and before + after >= len(times) - 5, (down, up, times)
        local.close()
    finally:
        for process in processes:
            stop_process(process)
        emulator.stop()
