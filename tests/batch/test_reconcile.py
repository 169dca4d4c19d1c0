"""Reconciliation: the batch's revenue against the Beam revenue job's windows over the same night.

The streaming side is the real revenue job (run all, into DuckDB) over the night's events with
four PAID orders held back, as if they had arrived after their windows closed; three of them
are then written to dead_letter as the job's late-data gate writes late events."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from batch.daily_metrics import reconcile_written, run
from tests.support.batch import DAYS
from tests.support.cli import run_cli, run_entry_point

pytestmark = pytest.mark.slow
TWO_DAYS = [date.fromisoformat(d) for d in DAYS]


def _late_dead_letter(con: duckdb.DuckDBPyConnection, line: bytes) -> None:
    event = json.loads(line)
    con.execute(
        "INSERT INTO dead_letter VALUES ('revenue', 'Revenue/LateGate', 'late', 'arrived after its window closed', "
        "NULL, ?, 'utf8', ?, ?::TIMESTAMPTZ, ?)",
        [line.decode(), event["event_id"], event["event_time"], datetime.now(timezone.utc)],
    )


@pytest.fixture(scope="module")
def streaming(night_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The revenue job's warehouse without four PAID events of the first day (their duplicates too)."""
    work = tmp_path_factory.mktemp("streaming")
    held, kept = [], []
    for line in (night_run / "orders.jsonl").read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            kept.append(line)
            continue
        chosen = (
            isinstance(event, dict)
            and event.get("status") == "PAID"
            and str(event.get("event_time", "")).startswith(DAYS[0])
            and event.get("total_amount") is not None
        )
        if chosen and (
            len({json.loads(h)["event_id"] for h in held}) < 4
            or event["event_id"] in {json.loads(h)["event_id"] for h in held}
        ):
            held.append(line)
        else:
            kept.append(line)
    (work / "orders.jsonl").write_bytes(b"\n".join(kept) + b"\n")
    (work / "clickstream.jsonl").write_bytes((night_run / "clickstream.jsonl").read_bytes())
    warehouse = work / "warehouse.duckdb"
    result = run_cli("run", "all", "--input", f"file://{work}", "--warehouse", f"duckdb://{warehouse}", "--quiet")
    assert result.exit_code == 0, result.output
    by_id = {json.loads(line)["event_id"]: line for line in held}
    late = list(by_id.values())
    with duckdb.connect(str(warehouse)) as con:
        for line in late[:3]:
            _late_dead_letter(con, line)
    return {"warehouse": warehouse, "late": late, "work": work}


def test_late_events_explain_a_difference_and_others_do_not(spark, night_run, streaming, tmp_path) -> None:
    output = tmp_path / "out"
    report = run(
        spark, TWO_DAYS, f"file://{night_run}", f"file://{output}", reconcile_with=f"duckdb://{streaming['warehouse']}"
    )
    first, second = report.reconciliation
    totals = [Decimal(str(json.loads(line)["total_amount"])) for line in streaming["late"]]
    assert (first["status"], first["late_orders"]) == ("MISMATCH", 3)
    assert Decimal(first["difference"]) == sum(totals)  # the four held back
    assert Decimal(first["late_gmv"]) == sum(totals[:3])  # three of them dead-lettered as late
    assert Decimal(first["unexplained"]) == totals[3]
    assert Decimal(first["batch_gmv"]) - Decimal(first["streaming_gmv"]) == Decimal(first["difference"])
    assert second["status"] == "MATCH" and second["difference"] == "0.00" and second["batch_orders"] > 0
    # The order messages the streaming parse step dead-lettered, by day: as SQL counts them.
    with duckdb.connect(str(streaming["warehouse"]), read_only=True) as con:
        for row in (first, second):
            expected = con.execute(
                "SET TimeZone = 'UTC'; SELECT count(*) FROM dead_letter WHERE step = 'Parse orders' "
                "AND CAST(COALESCE(event_time, received_at) AS DATE) = ?",
                [row["date"]],
            ).fetchone()[0]
            assert row["dead_lettered_orders"] == expected
    assert report.mismatched

    # The operator's daily command: exit 3 on the mismatch; once the fourth late event is
    # dead-lettered too, the late events explain the difference and it exits 0.
    mismatch = run_entry_point(
        "batch",
        "reconcile",
        "--date",
        DAYS[0],
        "--output",
        f"file://{output}",
        "--warehouse",
        f"duckdb://{streaming['warehouse']}",
        "--json",
        check=False,
        timeout=300,
    )
    assert mismatch.returncode == 3, mismatch.stderr
    with duckdb.connect(str(streaming["warehouse"])) as con:
        _late_dead_letter(con, streaming["late"][3])
    explained = reconcile_written(spark, TWO_DAYS[:1], f"file://{output}", f"duckdb://{streaming['warehouse']}")
    (row,) = explained.reconciliation
    assert (row["status"], row["late_orders"], row["unexplained"]) == ("EXPLAINED", 4, "0.00")
    with duckdb.connect(str(output / "batch.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status FROM daily_reconciliation WHERE date = ?", [TWO_DAYS[0]]).fetchall() == [
            ("EXPLAINED",)
        ]  # the day's row was replaced, not added to


def test_reconciling_the_same_events_matches_to_the_cent(spark, night_run, tmp_path) -> None:
    """Beam over all of the night's events, in batch mode: nothing is late, so every day matches."""
    warehouse = tmp_path / "warehouse.duckdb"
    assert (
        run_cli(
            "run",
            "revenue",
            "--input",
            f"file://{night_run / 'orders.jsonl'}",
            "--warehouse",
            f"duckdb://{warehouse}",
            "--quiet",
        ).exit_code
        == 0
    )
    report = run(
        spark, TWO_DAYS, f"file://{night_run}", f"file://{tmp_path / 'out'}", reconcile_with=f"duckdb://{warehouse}"
    )
    assert [
        (r["status"], r["difference"], r["batch_orders"] == r["streaming_orders"]) for r in report.reconciliation
    ] == [("MATCH", "0.00", True)] * 2
