"""The daily batch on local Spark against DuckDB SQL over the same events, cleaned by the Python
validator: every table, the counts, the rejects, re-running a date, an empty date, and the
warehouse (DuckDB) and Parquet inputs the pipelines' raw tables provide."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from batch.daily_metrics import JobError, parse_dates, run
from tests.support.batch import DAYS, assert_same_rows, rows_of
from tests.support.cli import run_cli

pytestmark = pytest.mark.slow
TWO_DAYS = [date.fromisoformat(d) for d in DAYS]
METRICS = (
    "daily_revenue",
    "daily_revenue_by_category",
    "daily_top_regions",
    "daily_conversion_funnel",
    "daily_order_status",
)


@pytest.fixture(scope="module")
def nightly(spark, night_run, tmp_path_factory):
    """Both days of the night run, from the simulator's JSON lines."""
    output = tmp_path_factory.mktemp("nightly")
    return run(spark, TWO_DAYS, f"file://{night_run}", f"file://{output}"), output


@pytest.mark.parametrize("table", METRICS)
def test_each_table_equals_duckdb_sql_over_the_same_events(nightly, reference, table) -> None:
    _, output = nightly
    assert_same_rows(rows_of(output, table), reference["tables"][table], table)


def test_both_days_have_rows_and_the_funnel_narrows(nightly) -> None:
    _, output = nightly
    assert {row[0].isoformat() for row in rows_of(output, "daily_revenue")} == set(DAYS)
    for day in DAYS:
        funnel = [r for r in rows_of(output, "daily_conversion_funnel") if r[0].isoformat() == day]
        users = [r[3] for r in funnel]
        strict = [r[6] for r in funnel]
        assert users[0] > 0 and all(s <= u for s, u in zip(strict, users)) and strict == sorted(strict, reverse=True)


def test_counts_add_up_and_match_the_python_validator(nightly, night_run, reference) -> None:
    report, _ = nightly
    for stream, file in (("orders", "orders.jsonl"), ("clickstream", "clickstream.jsonl")):
        counts = report.counts[stream]
        lines = sum(1 for _ in open(night_run / file, "rb"))
        assert counts["input"] == lines == counts["valid"] + counts["rejected"] + counts["duplicates"]
        assert counts == reference["counts"][stream], stream
        assert counts["rejected"] > 0 and counts["duplicates"] > 0  # the run has faults to count


def test_rejected_rows_are_kept_with_reason_and_payload(nightly, night_run) -> None:
    report, output = nightly
    rejects = rows_of(output, "batch_rejects")
    assert len(rejects) == report.counts["orders"]["rejected"] + report.counts["clickstream"]["rejected"]
    reasons = {r[3] for r in rejects}
    assert any("invalid JSON" in r for r in reasons) and any("required" in r for r in reasons)
    lines = set((night_run / "orders.jsonl").read_bytes().splitlines()) | set(
        (night_run / "clickstream.jsonl").read_bytes().splitlines()
    )
    for _, _stream, _, reason, payload, encoding in rejects:
        original = base64.b64decode(payload) if encoding == "base64" else payload.encode()
        assert original in lines, (reason, payload[:80])  # the payload is the line as it was read
    assert any(encoding == "base64" for *_, encoding in rejects)  # the invalid UTF-8 ones


def test_rerunning_a_date_replaces_that_date_only(spark, night_run, tmp_path) -> None:
    output = tmp_path / "out"
    run(spark, TWO_DAYS, f"file://{night_run}", f"file://{output}")
    before = {table: rows_of(output, table) for table in METRICS}
    run(spark, TWO_DAYS[1:], f"file://{night_run}", f"file://{output}")  # the same day again: nothing doubles
    assert {table: rows_of(output, table) for table in METRICS} == before
    # The second day again, now from an input without events that day: its rows go, the first day's stay.
    first_night = tmp_path / "first-day-only"
    first_night.mkdir()
    for name in ("orders.jsonl", "clickstream.jsonl"):
        with open(night_run / name, "rb") as source, open(first_night / name, "wb") as out:
            out.writelines(line for line in source if b'"event_time":"2026-11-02' not in line)
    run(spark, TWO_DAYS[1:], f"file://{first_night}", f"file://{output}")
    for table in METRICS:
        after = rows_of(output, table)
        assert after == [r for r in before[table] if r[0].isoformat() == DAYS[0]], table
        assert not (output / table / f"date={DAYS[1]}").exists()


def test_an_empty_date_gives_no_rows_and_no_error(spark, night_run, tmp_path) -> None:
    report = run(spark, [date(2026, 10, 15)], f"file://{night_run}", f"file://{tmp_path}")
    assert report.counts["orders"]["valid"] == report.counts["clickstream"]["valid"] == 0
    assert all(report.rows_written[t] == 0 for t in METRICS)
    # Rows without a readable event_time belong to no day: every run reports them (here, under 10-15).
    assert (
        report.rows_written["batch_rejects"]
        == report.counts["orders"]["rejected"] + report.counts["clickstream"]["rejected"]
        > 0
    )


@pytest.fixture(scope="module")
def warehouse(night_run, tmp_path_factory) -> Path:
    """The Beam jobs' DuckDB warehouse of the night run, with the raw event tables (--raw-events)."""
    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    result = run_cli(
        "run", "all", "--input", f"file://{night_run}", "--warehouse", f"duckdb://{path}", "--raw-events", "--quiet"
    )
    assert result.exit_code == 0, result.output
    return path


def test_the_pipelines_warehouse_and_parquet_give_the_same_tables(spark, warehouse, nightly, tmp_path) -> None:
    _, from_files = nightly
    from_warehouse = tmp_path / "from-warehouse"
    report = run(spark, TWO_DAYS, f"duckdb://{warehouse}", f"file://{from_warehouse}")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        raw = {
            "orders": con.execute("SELECT count(*) FROM order_events").fetchone()[0],
            "clickstream": con.execute("SELECT count(*) FROM clickstream_events").fetchone()[0],
        }
        parquet = tmp_path / "parquet"
        for table in ("order_events", "clickstream_events"):
            (parquet / table).mkdir(parents=True)
            con.execute(f"COPY {table} TO '{parquet / table / 'part-0.parquet'}' (FORMAT parquet)")
    for stream in ("orders", "clickstream"):  # the pipelines kept each valid event once
        assert report.counts[stream] == {"input": raw[stream], "valid": raw[stream], "rejected": 0, "duplicates": 0}
    from_parquet = tmp_path / "from-parquet"
    run(spark, TWO_DAYS, f"parquet://{parquet}", f"file://{from_parquet}")
    for table in METRICS:
        assert rows_of(from_warehouse, table) == rows_of(from_files, table) == rows_of(from_parquet, table), table


def test_bad_arguments_are_refused_with_the_reason(spark, night_run, tmp_path) -> None:
    with pytest.raises(JobError, match="expected YYYY-MM-DD"):
        parse_dates("yesterday")
    with pytest.raises(JobError, match="ends before it starts"):
        parse_dates("2026-11-02..2026-11-01")
    with pytest.raises(JobError, match="expected file://DIR"):
        run(spark, TWO_DAYS, "s3://bucket/x", f"file://{tmp_path}")
    with pytest.raises(JobError, match="no orders.jsonl"):
        run(spark, TWO_DAYS, f"file://{tmp_path}", f"file://{tmp_path / 'out'}")
    with pytest.raises(JobError, match="needs --temporary-gcs-bucket"):
        run(spark, TWO_DAYS, f"file://{night_run}", "bigquery://project.analytics")
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(JobError, match="no table order_events: run the pipelines with --raw-events"):
        run(spark, TWO_DAYS, f"duckdb://{empty}", f"file://{tmp_path / 'out2'}")


def test_the_cli_runs_the_job_and_prints_the_summary(night_run, tmp_path) -> None:
    """`streamforge batch daily` as a user runs it: its own local Spark, a JSON summary."""
    from tests.support.cli import run_entry_point

    process = run_entry_point(
        "batch",
        "daily",
        "--date",
        DAYS[0],
        "--input",
        f"file://{night_run}",
        "--output",
        f"file://{tmp_path}",
        "--json",
        "--cores",
        "2",
        timeout=300,
    )
    summary = json.loads(process.stdout[process.stdout.index("{") :])
    assert summary["dates"] == [DAYS[0]] and summary["rows_written"]["daily_conversion_funnel"] == 4
    bad = run_entry_point("batch", "daily", "--date", "2026-13-01", "--input", f"file://{night_run}", check=False)
    assert bad.returncode == 2 and "expected YYYY-MM-DD" in bad.stderr
    shutil.rmtree(tmp_path)
