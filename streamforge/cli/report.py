"""``streamforge report``: what the jobs wrote to a warehouse (DuckDB, or BigQuery's current
rows), and the fraud alerts measured against the simulator's ground truth (the end of `make demo`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import duckdb
import typer
from rich.console import Console
from rich.table import Table

from streamforge.bigquery_warehouse import WarehouseUnavailable
from streamforge.warehouse import WarehouseBusy
from streamforge.warehouse_reading import WarehouseLocation, open_warehouse
from streamforge.warehouse_tables import OPEN_SESSION

__all__ = ["TABLES", "report"]

#: What the report reads.
TABLES = ("user_sessions", "revenue_by_category_region", "revenue_per_minute", "fraud_alerts", "dead_letter")


def _table(console: Console, title: str, columns: list[str], rows: list[tuple]) -> None:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(
            *(f"{v:,}" if isinstance(v, int) else f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row)
        )
    console.print(table)


def _missing(con: duckdb.DuckDBPyConnection, console: Console, title: str, *tables: str) -> bool:
    """True (and says so) when the warehouse has no ``tables`` yet: the job that writes them did
    not run, or (streaming) has not closed a window yet."""
    have = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    absent = [t for t in tables if t not in have]
    if absent:
        console.print(
            f"{title}: no {', '.join(absent)} in this warehouse yet (the job that writes it has not run, "
            "or a streaming job has not closed a window yet)",
            highlight=False,
        )
    return bool(absent)


def report(
    warehouse: str = typer.Option(
        "out/warehouse.duckdb",
        metavar="PATH|bigquery://PROJECT.DATASET",
        help="The warehouse: a DuckDB file, or a BigQuery dataset (its current rows).",
    ),
    labels: Optional[Path] = typer.Option(
        None, metavar="PATH", help="fraud_labels.jsonl of the simulation, to score the alerts."
    ),
) -> None:
    """Summarise a warehouse: sessions and conversion, revenue by region and category,
    fraud alerts (precision and recall against --labels), dead letters by reason."""
    try:
        location = WarehouseLocation(warehouse)
    except ValueError as exc:
        typer.echo(f"error: --warehouse {exc}", err=True)
        raise typer.Exit(2) from None
    if not location.exists():
        typer.echo(
            f"error: --warehouse {warehouse}: no such file (run `streamforge run ... --warehouse duckdb:///PATH` first)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        reading = open_warehouse(location, TABLES)
    except (WarehouseBusy, WarehouseUnavailable) as exc:
        typer.echo(f"error: --warehouse {warehouse}: {exc}", err=True)
        raise typer.Exit(2) from None
    con, console = reading.connection, Console()
    if reading.snapshot and location.bigquery is not None:
        console.print(f"({warehouse}: the current rows of each table, read now)", highlight=False, soft_wrap=True)
    elif reading.snapshot:
        console.print(
            f"(a run is writing {warehouse}: this is its snapshot of {reading.age_s:.0f} s ago)",
            highlight=False,
            soft_wrap=True,
        )
    if not _missing(con, console, "Sessions", "user_sessions"):
        _sessions(con, console)
    if not _missing(con, console, "Revenue", "revenue_by_category_region", "revenue_per_minute"):
        _revenue(con, console)
    if not _missing(con, console, "Fraud alerts", "fraud_alerts"):
        _alerts(con, console, labels)
    if not _missing(con, console, "Dead letters", "dead_letter"):
        _table(
            console,
            "Dead letters",
            ["reason", "pipeline step", "count"],
            con.execute("SELECT reason, step, count(*)::INT FROM dead_letter GROUP BY 1, 2 ORDER BY 3 DESC").fetchall()
            or [("(none)", "", 0)],
        )


def _sessions(con: duckdb.DuckDBPyConnection, console: Console) -> None:
    _table(
        console,
        "Sessions",
        ["sessions", "open", "users", "events", "avg events", "avg minutes", "conversion %", "cart abandonment %"],
        con.execute(f"""
               SELECT count(*)::INT, count(*) FILTER (WHERE {OPEN_SESSION})::INT, count(DISTINCT user_id)::INT,
                      coalesce(sum(event_count), 0)::BIGINT, avg(event_count)::DOUBLE, avg(duration_seconds) / 60,
                      100 * avg(converted::INT), 100 * avg(cart_abandoned::INT) FROM user_sessions""").fetchall(),
    )


def _revenue(con: duckdb.DuckDBPyConnection, console: Console) -> None:
    _table(
        console,
        "Revenue by region (PAID order lines)",
        ["region", "gmv", "units", "orders"],
        con.execute("""
        SELECT region, sum(gmv)::DOUBLE, sum(units)::INT, sum(order_count)::INT FROM revenue_by_category_region
        GROUP BY 1 ORDER BY 2 DESC""").fetchall(),
    )
    _table(
        console,
        "Revenue by category",
        ["category", "gmv", "units", "orders"],
        con.execute("""
        SELECT category, sum(gmv)::DOUBLE, sum(units)::INT, sum(order_count)::INT FROM revenue_by_category_region
        GROUP BY 1 ORDER BY 2 DESC""").fetchall(),
    )
    _table(
        console,
        "Revenue per minute",
        ["minutes", "gmv", "orders", "avg order value", "cancelled gmv"],
        con.execute("""
        SELECT count(*)::INT, sum(gmv)::DOUBLE, sum(order_count)::INT, (sum(gmv) / nullif(sum(order_count), 0))::DOUBLE,
               sum(cancelled_gmv)::DOUBLE FROM revenue_per_minute""").fetchall(),
    )


def _alerts(con: duckdb.DuckDBPyConnection, console: Console, labels: Optional[Path]) -> None:
    alerts = con.execute("SELECT alert_type, user_id FROM fraud_alerts").fetchall()
    if labels is not None:
        with labels.open() as fh:
            truth = {(case["pattern"], case["user_id"]) for case in map(json.loads, fh)}
        found = set(alerts)
        rows = []
        for pattern in sorted({p for p, _ in truth | found}):
            f = {a for a in found if a[0] == pattern}
            t = {a for a in truth if a[0] == pattern}
            rows.append((pattern, len(f), len(t), len(f & t) / len(f) if f else 1.0, len(f & t) / len(t) if t else 1.0))
        hit = len(found & truth)
        rows.append(
            ("all", len(found), len(truth), hit / len(found) if found else 1.0, hit / len(truth) if truth else 1.0)
        )
        _table(
            console,
            "Fraud alerts against the injected ground truth",
            ["pattern", "alerts", "injected", "precision", "recall"],
            rows,
        )
    else:
        _table(
            console,
            "Fraud alerts",
            ["pattern", "alerts"],
            con.execute("SELECT alert_type, count(*)::INT FROM fraud_alerts GROUP BY 1 ORDER BY 1").fetchall(),
        )
