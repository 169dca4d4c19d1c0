"""`streamforge report` on a warehouse one job wrote: the tables another job writes are said
to be missing instead of crashing the report (what a streaming run that has not closed a
session window yet looks like)."""

from __future__ import annotations

import duckdb

from tests.support.cli import run_cli


def test_report_names_missing_tables_and_shows_the_rest(tmp_path) -> None:
    events, warehouse = tmp_path / "events", tmp_path / "w.duckdb"
    assert run_cli("simulate", "--output", f"file://{events}", "--duration", "10m").exit_code == 0
    ran = run_cli(
        "run",
        "revenue",
        "--input",
        f"file://{events / 'orders.jsonl'}",
        "--warehouse",
        f"duckdb://{warehouse}",
        "--quiet",
    )
    assert ran.exit_code == 0, ran.output
    result = run_cli("report", "--warehouse", str(warehouse))
    assert result.exit_code == 0, result.output
    assert "Sessions: no user_sessions in this warehouse yet" in result.output
    assert "Fraud alerts: no fraud_alerts in this warehouse yet" in result.output
    with duckdb.connect(str(warehouse), read_only=True) as con:
        minutes, orders = con.execute("SELECT count(*), sum(order_count) FROM revenue_per_minute").fetchone()
    assert minutes > 0
    revenue = result.output.split("Revenue per minute")[1]
    assert f"{minutes:,}" in revenue and f"{int(orders):,}" in revenue
    assert "Dead letters" in result.output
