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


def test_report_counts_open_sessions_from_their_early_rows(tmp_path) -> None:
    """A streaming run writes an open session's row so far as an EARLY pane; the report counts
    those as open, and every session's events so far, beside the closed ones."""
    import pyarrow as pa

    from beam_pipelines.common.warehouse import create_table_sql
    from streamforge.schemas import get_schema
    from tests.support.samples import sample

    warehouse = tmp_path / "w.duckdb"
    row = get_schema("session_aggregate").validate(sample("session_aggregate"))
    rows = [
        {**row, "session_id": "closed", "event_count": 5, "pane_timing": "ON_TIME"},
        {**row, "session_id": "open-1", "event_count": 3, "pane_timing": "EARLY"},
        {**row, "session_id": "open-2", "event_count": 4, "pane_timing": "EARLY"},
    ]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(create_table_sql(get_schema("session_aggregate")))
        con.register("sent", pa.Table.from_pylist(rows))
        con.execute("INSERT INTO user_sessions BY NAME SELECT * FROM sent")
    result = run_cli("report", "--warehouse", str(warehouse))
    assert result.exit_code == 0, result.output
    sessions = result.output.split("Sessions")[1].split("Revenue")[0]
    header = [line for line in sessions.splitlines() if line.startswith("┃")][-1]  # names on the last header line
    (values,) = [line for line in sessions.splitlines() if line.startswith("│")]
    names, cells = [c.strip() for c in header.split("┃")][1:5], [c.strip() for c in values.split("│")][1:5]
    assert names == ["sessions", "open", "users", "events"] and cells == ["3", "2", "1", "12"], sessions
