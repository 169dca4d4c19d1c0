"""`streamforge up` from start to clean stop, as a user runs it (a separate process, Ctrl-C).

Reduced rate, about a minute, CDC included; once over the Pub/Sub emulator, once over a Kafka
broker (`--transport kafka`: events and changes through Tansu, alerts through Pub/Sub). While it runs: the warehouse fills and is read
from another process, and an injected RAPID_ORDERS case reaches the webhook through the
push subscription and the dispatcher. After Ctrl-C: every alert arrived signed and once;
every session of the run is in user_sessions and revenue per minute equals SQL over what the
simulator recorded it published (plus the injected orders); the CDC job wrote its
changelogs; and no process of the run is left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pytest

from streamforge.live.system import sink_records
from streamforge.warehouse import open_for_reading
from tests.support.cli import stop_entry_point, wait_while_running
from tests.support.drain_check import drained_differences
from tests.support.live import delivered_to, inject_rapid_orders, live_state, start_up

pytestmark = [pytest.mark.pubsub, pytest.mark.postgres, pytest.mark.slow]
GAP_MS = 30 * 60_000


def _rows(path: Path, sql: str) -> list[tuple]:
    try:
        with open_for_reading(path) as reading:
            return reading.connection.execute(sql).fetchall()
    except (duckdb.Error, OSError, RuntimeError):
        return []


@pytest.mark.parametrize("transport", ["pubsub", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_up_runs_the_whole_system_and_stops_without_loss(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, log = tmp_path / "live", tmp_path / "up.log"
    project = "live-test-project"
    up = start_up(workdir, log, project, "--transport", transport)
    try:
        state = wait_while_running(up, log, "the system to start", lambda: live_state(workdir), 240)
        pids = [service["pid"] for service in state["services"].values()]
        assert ("kafka-broker" in state["services"]) == (transport == "kafka")
        user = inject_rapid_orders(state, project, tmp_path / "injected.jsonl", monkeypatch)
        warehouse = workdir / "warehouse.duckdb"
        # the tables fill while it runs, and another process can read them (the snapshot)
        wait_while_running(
            up,
            log,
            "revenue rows",
            lambda: (
                _rows(warehouse, "SELECT count(*) FROM revenue_per_minute")[:1] != [(0,)]
                and _rows(warehouse, "SELECT count(*) FROM revenue_per_minute")
            ),
            120,
        )
        delivered = wait_while_running(
            up,
            log,
            "the injected alert at the webhook",
            lambda: delivered_to(workdir, user),
            120,
        )
        # open sessions are visible while open (their gap is 30 minutes): EARLY rows, every
        # sessions.early_panes (1 minute) of a session's clicks, read as the dashboard reads them;
        # more than a few (they come a pane at a time, so the first snapshot may hold only some)
        wait_while_running(
            up,
            log,
            "more than 10 open sessions (EARLY rows)",
            lambda: _rows(warehouse, "SELECT count(*) FROM user_sessions WHERE pane_timing = 'EARLY'")[:1] > [(10,)],
            120,
        )
        assert delivered[0]["body"]["alert_type"] == "RAPID_ORDERS"
        time.sleep(10)  # more traffic, then Ctrl-C
    finally:
        stop_entry_point(up)
    output = log.read_text(errors="replace")
    assert up.returncode == 0, output[-3000:]

    for pid in pids:  # every child and its process group are gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)

    # every alert reached the webhook signed (the sink verifies) and once; none was refused
    records = sink_records(workdir / "logs" / "webhook-sink.log")
    assert records and {r["verdict"] for r in records} == {"alert"}
    # the tables equal SQL over what was published (the simulator's record and the injected
    # orders): every session final (no EARLY row left), every minute, every alert delivered once
    counts, differences = drained_differences(workdir, [tmp_path / "injected.jsonl"], GAP_MS)
    assert differences == []
    assert counts["sessions"] > 100 and counts["alerts delivered"] >= 1

    cdc = duckdb.connect(str(workdir / "cdc.duckdb"), read_only=True)
    assert cdc.execute("SELECT count(*) FROM orders_changelog").fetchone()[0] > 0
    assert "stopped." in output
