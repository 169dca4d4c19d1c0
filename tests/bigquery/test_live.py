"""`streamforge up --warehouse bigquery`: the whole live system writing a local BigQuery (the
emulator, started by `up`, its dataset made from the plan's declarations) through the
production sinks. While it runs, the dashboard reads BigQuery; an injected RAPID_ORDERS case
reaches the webhook. After Ctrl-C the emulator is started again on the data `up` left, and
the ``_current`` views equal SQL over what the simulator published, `report` reads them, and
the CDC job's replicas are there.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from streamforge.live.system import sink_records
from streamforge.naming import DATASET
from streamforge.services import free_port, start_bigquery_emulator
from tests.support.bigquery import bigquery_client, view_rows
from tests.support.cli import run_entry_point, stop_entry_point, wait_while_running
from tests.support.live import delivered_to, inject_rapid_orders, live_state, start_up
from tests.support.reference import load, revenue_per_minute, session_windows

pytestmark = [pytest.mark.bigquery, pytest.mark.pubsub, pytest.mark.postgres, pytest.mark.slow]
GAP_MS = 30 * 60_000


def _summary(url: str) -> dict:
    with urllib.request.urlopen(f"{url}api/summary", timeout=10) as response:
        return orjson.loads(response.read())


def test_up_with_bigquery_runs_the_whole_system_into_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, log, project = tmp_path / "live", tmp_path / "up.log", "live-bigquery"
    up = start_up(workdir, log, project, "--warehouse", "bigquery")
    try:
        state = wait_while_running(up, log, "the system to start", lambda: live_state(workdir), 240)
        assert "bigquery-emulator" in state["services"]
        user = inject_rapid_orders(state, project, tmp_path / "injected.jsonl", monkeypatch)
        dashboard = state["urls"]["dashboard"]
        # the dashboard reads BigQuery while the jobs write it
        summary = wait_while_running(
            up,
            log,
            "revenue and the injected alert on the dashboard",
            lambda: (
                (s := _summary(dashboard))["warehouse"].get("revenue_per_minute")
                and any(a["user_id"] == user for a in s["warehouse"].get("alerts", []))
                and s
            ),
            180,
        )
        assert summary["warehouse"]["state"].startswith("snapshot of")  # BigQuery read every few seconds
        wait_while_running(
            up,
            log,
            "the injected alert at the webhook",
            lambda: delivered_to(workdir, user),
            120,
        )
        time.sleep(10)
    finally:
        stop_entry_point(up)
    output = log.read_text(errors="replace")
    assert up.returncode == 0, output[-3000:]

    # BigQuery again, on the data `up` left (the emulator's files), as after a restart
    emulator = start_bigquery_emulator(tmp_path / "bigquery.log", free_port(), project, data=workdir / "bigquery")
    try:
        client, dataset = bigquery_client(f"http://{emulator.address}", project), f"{project}.{DATASET}"
        reference_dir = tmp_path / "reference"
        shutil.copytree(workdir / "published", reference_dir)
        with open(reference_dir / "orders.jsonl", "ab") as orders:
            orders.write((tmp_path / "injected.jsonl").read_bytes())
        reference = load(reference_dir, skip_malformed=True)
        columns = ["user_id", "session_start", "session_end", "event_count", "page_views", "purchase_count"]
        columns.append("total_revenue")
        expected = reference.execute(
            f"SELECT {', '.join(columns)} FROM ({session_windows(reference, GAP_MS).sql_query()})"
        ).fetchall()
        sessions = view_rows(client, dataset, "user_sessions_current", columns)
        assert len(sessions) > 100 and sessions == sorted(expected, key=repr)
        columns = ["window_start", "gmv", "order_count", "units", "unique_users", "cancelled_gmv"]
        expected = reference.execute(
            f"SELECT {', '.join(columns)} FROM ({revenue_per_minute(reference).sql_query()})"
        ).fetchall()
        assert view_rows(client, dataset, "revenue_per_minute_current", columns) == sorted(expected, key=repr)
        received = {r["body"]["alert_id"] for r in sink_records(workdir / "logs" / "webhook-sink.log")}
        assert {a for (a,) in view_rows(client, dataset, "fraud_alerts_current", ["alert_id"])} == received
        # the CDC job wrote the same dataset: changelogs and replicas
        assert view_rows(client, dataset, "orders_current", ["id"], where="NOT _deleted")
        assert view_rows(client, dataset, "orders_changelog", ["lsn"])
        report = run_entry_point(
            "report",
            "--warehouse",
            f"bigquery://{dataset}",
            env={"BIGQUERY_EMULATOR_HOST": f"http://{emulator.address}"},
        )
        assert f"{len(sessions):,}" in report.stdout
    finally:
        emulator.stop()
