"""Streaming from Kafka end to end: simulator -> Tansu (3 partitions per topic, the Confluent
wire format) -> `run all` streaming through the local feed -> DuckDB.

A first run is killed (SIGKILL) part-way: it commits nothing, so the second run reads every
message again from the group's start and, drained, leaves sessions and revenue equal to SQL
over the same simulation written to files (nothing lost, nothing counted twice: the tables
are keyed). The second run commits what it took, so a third run of the group reads nothing.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from beam_pipelines.requests import analytics_request
from beam_pipelines.runner import JobReport, pipeline_options, run
from streamforge.config import load_config
from tests.support.cli import entry_point_env, run_entry_point
from tests.support.reference import load, revenue_per_minute, session_windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
SIMULATION = ("--duration", "20m", "--seed", "11", "--malformed", "0.01", "--duplicates", "0.01")
GAP_MS = 30 * 60_000
GROUP = "test-streaming"


def stream_all(kafka: str, config: Path, warehouse: Path, expected: int, *, limit_s: float = 180) -> JobReport:
    """`run all` streaming from the topics in ``config`` until ``expected`` messages were taken, then drained."""
    request = analytics_request(
        "all", load_config(config), warehouse=f"duckdb://{warehouse}", input_url=f"kafka://{kafka}?group={GROUP}"
    )
    started, taken = time.monotonic(), [0]

    def progress(counts) -> None:
        taken[0] = sum(c.acked for c in counts.values())

    def should_stop() -> bool:
        return taken[0] >= expected or time.monotonic() - started > limit_s

    return run(request, pipeline_options(request), should_stop=should_stop, on_progress=progress)


@pytest.fixture(scope="module")
def restarted(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[JobReport, Path, Path, int, Path]:
    tmp = tmp_path_factory.mktemp("kafka-streaming")
    files, warehouse, config = tmp / "files", tmp / "warehouse.duckdb", tmp / "topics.toml"
    config.write_text('[topics]\nclickstream = "live-clicks"\norders = "live-orders"\n')
    run_entry_point("simulate", "--output", f"file://{files}", *SIMULATION, "-q")
    produced = run_entry_point(
        "--config", str(config), "simulate", "--output", f"kafka://{kafka}", "--format", "confluent", *SIMULATION
    )
    # (the injected faults are drawn per format, so the count is the simulator's, not the files')
    expected = int(
        re.search(r"messages written\D*([\d,]+)", produced.stdout + produced.stderr).group(1).replace(",", "")
    )
    # The first run, killed once it has written something.
    killed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamforge",
            "--config",
            str(config),
            "run",
            "all",
            "--input",
            f"kafka://{kafka}?group={GROUP}",
            "--warehouse",
            f"duckdb://{warehouse}",
            "--quiet",
        ],
        env=entry_point_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not Path(f"{warehouse}.snapshot").exists() and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.5)
    assert killed.poll() is None, killed.stderr.read().decode()[-2000:]
    time.sleep(2)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    with duckdb.connect(str(warehouse), read_only=True) as con:  # it had written part of the results
        written_before = con.execute("SELECT count(*) FROM revenue_per_minute").fetchone()[0]
    assert written_before > 0
    report = stream_all(kafka, config, warehouse, expected)
    return report, files, warehouse, expected, config


def test_a_killed_run_is_read_again_and_nothing_is_lost_or_double_counted(restarted) -> None:
    report, files, warehouse, expected, _ = restarted
    reference = load(files, skip_malformed=True)
    read = 0
    for stream, table in (("clickstream", "clicks"), ("orders", "orders")):
        stream_read, unique, dead, duplicates = report.accounting(stream)
        assert stream_read == unique + dead + duplicates
        assert unique == reference.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert dead > 0 and duplicates > 0
        read += stream_read
    assert read == expected  # the second run read everything: the killed one had committed nothing
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        columns = "user_id, session_start, session_end, event_count, page_views, purchase_count, total_revenue"
        sessions = con.execute(f"SELECT {columns} FROM user_sessions ORDER BY ALL").fetchall()
        revenue_columns = "window_start, gmv, order_count, units, unique_users, cancelled_gmv"
        revenue = con.execute(f"SELECT {revenue_columns} FROM revenue_per_minute ORDER BY 1").fetchall()
    assert (
        sessions
        == reference.execute(
            f"SELECT {columns} FROM ({session_windows(reference, GAP_MS).sql_query()}) ORDER BY ALL"
        ).fetchall()
    )
    assert (
        revenue
        == reference.execute(
            f"SELECT {revenue_columns} FROM ({revenue_per_minute(reference).sql_query()}) ORDER BY 1"
        ).fetchall()
    )
    assert len(sessions) > 1000 and len(revenue) >= 15


def test_a_drained_run_commits_so_the_next_reads_only_what_is_new(restarted, kafka: str, tmp_path: Path) -> None:
    _, _, _, _, config = restarted
    again = stream_all(kafka, config, tmp_path / "again.duckdb", expected=1, limit_s=10)
    assert sum(again.accounting(s)[0] for s in ("clickstream", "orders")) == 0
