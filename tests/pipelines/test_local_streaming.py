"""The local streaming path end to end: simulator -> Pub/Sub emulator -> `run all` streaming
(the local feed, the patched DirectRunner) -> DuckDB, stopped as Ctrl-C stops it.

The same simulation is written to files, and SQL over those files (tests/support/reference.py)
is the independent answer: after the drain every message is accounted for, every session of
the run is in user_sessions and revenue per minute is right to the cent. While the job runs,
`streamforge report` reads the warehouse from another process.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from beam_pipelines.requests import analytics_request
from beam_pipelines.runner import JobReport, pipeline_options, run
from streamforge.config import load_config
from tests.support.cli import STREAMFORGE, entry_point_env, run_entry_point
from tests.support.reference import load, revenue_per_minute, session_windows

pytestmark = [pytest.mark.pubsub, pytest.mark.slow]
SIMULATION = ("--duration", "20m", "--seed", "5", "--malformed", "0.01", "--duplicates", "0.01")
GAP_MS = 30 * 60_000


class Run:
    def __init__(self, files: Path, warehouse: Path, report: JobReport, read_while_running: str):
        self.files, self.report, self.read_while_running = files, report, read_while_running
        self.warehouse = duckdb.connect(str(warehouse), read_only=True)
        self.warehouse.execute("SET TimeZone = 'UTC'")
        self.reference = load(files, skip_malformed=True)

    def lines(self, stream: str) -> int:
        return sum(1 for _ in (self.files / f"{stream}.jsonl").open("rb"))


@pytest.fixture(scope="module")
def streamed(pubsub: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub
    project = f"live-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("live")
    files, warehouse = tmp / "files", tmp / "warehouse.duckdb"
    emulator = {"PUBSUB_EMULATOR_HOST": pubsub}
    run_entry_point("pubsub", "create", "--project", project, "--no-cdc", env=emulator)
    run_entry_point("simulate", "--output", f"file://{files}", *SIMULATION, "-q", env=emulator)
    run_entry_point("simulate", "--output", f"pubsub://{project}", *SIMULATION, "-q", env=emulator)
    expected = sum(sum(1 for _ in (files / f"{s}.jsonl").open("rb")) for s in ("clickstream", "orders"))

    sub = f"pubsub://projects/{project}/subscriptions/streamforge-analytics"
    request = analytics_request(
        "all",
        load_config(),
        warehouse=f"duckdb://{warehouse}",
        clickstream=f"{sub}-clickstream",
        orders=f"{sub}-orders",
    )
    started, state = time.monotonic(), {"taken": 0, "read": ""}

    def progress(counts) -> None:
        state["taken"] = sum(c.acked for c in counts.values())
        if state["taken"] == expected and not state["read"]:
            time.sleep(2.5)  # a snapshot is published within 2 s of writing
            state["read"] = subprocess.run(
                [STREAMFORGE, "report", "--warehouse", str(warehouse)],
                env=entry_point_env(**emulator),
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout

    def should_stop() -> bool:  # Ctrl-C once everything published was taken (or after 3 minutes)
        return bool(state["read"]) or time.monotonic() - started > 180

    report = run(request, pipeline_options(request), should_stop=should_stop, on_progress=progress)
    assert state["taken"] == expected
    return Run(files, warehouse, report, state["read"])


def test_every_message_is_accounted_for_after_the_drain(streamed: Run) -> None:
    for stream, table in (("clickstream", "clicks"), ("orders", "orders")):
        read, unique, dead, dupes = streamed.report.accounting(stream)
        assert read == streamed.lines(stream) == unique + dead + dupes
        ((expected,),) = streamed.reference.execute(f"SELECT count(*) FROM {table}").fetchall()
        assert unique == expected
        assert dupes > 0 and dead > 0
    dead_total = sum(streamed.report.accounting(s)[2] for s in ("clickstream", "orders"))
    assert streamed.warehouse.execute("SELECT count(*) FROM dead_letter").fetchall() == [(dead_total,)]
    assert streamed.report.counters["sessions"]["events"] == streamed.report.accounting("clickstream")[1]


def test_every_session_of_the_run_is_written(streamed: Run) -> None:
    columns = "user_id, session_start, session_end, event_count, page_views, purchase_count, total_revenue"
    expected = streamed.reference.execute(
        f"SELECT {columns} FROM ({session_windows(streamed.reference, GAP_MS).sql_query()}) ORDER BY ALL"
    ).fetchall()
    actual = streamed.warehouse.execute(f"SELECT {columns} FROM user_sessions ORDER BY ALL").fetchall()
    assert len(actual) > 1000
    assert actual == expected


def test_revenue_per_minute_equals_sql_to_the_cent(streamed: Run) -> None:
    columns = "window_start, gmv, order_count, units, unique_users, cancelled_gmv"
    expected = streamed.reference.execute(
        f"SELECT {columns} FROM ({revenue_per_minute(streamed.reference).sql_query()}) ORDER BY 1"
    ).fetchall()
    actual = streamed.warehouse.execute(f"SELECT {columns} FROM revenue_per_minute ORDER BY 1").fetchall()
    assert len(actual) >= 15
    assert actual == expected


def test_the_warehouse_was_readable_while_the_job_wrote_it(streamed: Run) -> None:
    assert "this is its snapshot" in streamed.read_while_running
    assert "Revenue by region" in streamed.read_while_running
