"""The live dashboard: a Flask app serving one page and the JSON it polls.

The page (static/) draws with Plotly's JavaScript, served from the plotly package itself (no
download, no CDN) and updates every two seconds from ``/api/summary``: revenue per minute,
sessions and conversion, revenue by region and category, the latest fraud alerts with their
webhook delivery (from the webhook sink's log), dead letters by reason, and pipeline health
(events/s pulled and processed, watermark lag, CDC lag, from the jobs' progress files).

It reads the warehouse through ``open_warehouse`` (streamforge/warehouse_reading.py): a DuckDB
file's latest snapshot while a run writes it, so the dashboard never blocks the writer, or a
BigQuery dataset's current rows, read again every ``BIGQUERY_EVERY_S``. A table a warehouse
does not have yet is shown empty.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, send_from_directory

from streamforge.bigquery_warehouse import WarehouseUnavailable
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.cdc.warehouse import changelog_name
from streamforge.live.progress import JobProgress, read_job_progress
from streamforge.live.system import sink_records
from streamforge.warehouse import WarehouseBusy
from streamforge.warehouse_reading import WarehouseLocation, open_warehouse
from streamforge.warehouse_tables import OPEN_SESSION, captured_tables

__all__ = ["DashboardSources", "create_app", "summary"]

STATIC = Path(__file__).parent / "static"
_RECENT_MINUTES = 60
_LATEST_ALERTS = 20
#: How long the dashboard shows what it read from BigQuery before reading again (seconds).
BIGQUERY_EVERY_S = 5.0
#: What the page says before the jobs have written anything it can read.
STARTING = "starting: the jobs have not written their first results yet"
#: The shortest span a rate is measured over (the jobs write their progress every second or so).
RATE_SPAN_S = 1.5
#: The tables the dashboard reads.
TABLES = ("revenue_per_minute", "user_sessions", "revenue_by_category_region", "fraud_alerts", "dead_letter")


@dataclass
class DashboardSources:
    warehouse: WarehouseLocation
    cdc_warehouse: WarehouseLocation | None = None
    alerts_log: Path | None = None  # the webhook sink's --jsonl output
    progress_dir: Path | None = None  # where the jobs' *.progress.json are
    #: job -> the progress samples seen, oldest first: the rates span the newest sample and the
    #: newest one at least ``RATE_SPAN_S`` older, so every reader between two samples sees the same
    _samples: dict[str, list[JobProgress]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _rows(con: Any, have: set[str], table: str, sql: str) -> list[dict[str, Any]]:
    if table not in have:
        return []
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [{n: _plain(v) for n, v in zip(names, row)} for row in cursor.fetchall()]


def _warehouse_part(location: WarehouseLocation) -> dict[str, Any]:
    if not location.exists():
        return {"state": STARTING}
    try:
        reading = open_warehouse(location, TABLES, every_s=BIGQUERY_EVERY_S)
    except WarehouseBusy:  # a run holds the file and has not published its first snapshot
        return {"state": STARTING}
    except WarehouseUnavailable as exc:
        return {"state": str(exc)}
    with reading:
        con = reading.connection
        have = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        part = {
            "state": f"snapshot of {reading.age_s:.0f} s ago" if reading.snapshot else "current",
            "tables": sorted(have),
        }
        part["revenue_per_minute"] = _rows(
            con,
            have,
            "revenue_per_minute",
            f"""
            SELECT window_start, gmv, order_count FROM (
                SELECT window_start, gmv, order_count FROM revenue_per_minute ORDER BY window_start DESC
                LIMIT {_RECENT_MINUTES}) ORDER BY window_start""",
        )
        part["sessions"] = _rows(
            con,
            have,
            "user_sessions",
            f"""
            SELECT count(*) AS sessions, count(DISTINCT user_id) AS users,
                   count(*) FILTER (WHERE {OPEN_SESSION}) AS open_sessions,
                   coalesce(sum(event_count), 0) AS events,
                   coalesce(100 * avg(converted::INT), 0) AS conversion_pct,
                   coalesce(avg(event_count), 0) AS avg_events FROM user_sessions""",
        )
        part["regions"] = _rows(
            con,
            have,
            "revenue_by_category_region",
            """
            SELECT region, sum(gmv) AS gmv, sum(order_count) AS orders FROM revenue_by_category_region
            GROUP BY region ORDER BY gmv DESC, region""",
        )
        part["categories"] = _rows(
            con,
            have,
            "revenue_by_category_region",
            """
            SELECT category, sum(gmv) AS gmv, sum(units) AS units FROM revenue_by_category_region
            GROUP BY category ORDER BY gmv DESC, category""",
        )
        part["alerts"] = _rows(
            con,
            have,
            "fraud_alerts",
            f"""
            SELECT alert_id, alert_type, user_id, order_id, risk_score, event_time, detected_at FROM fraud_alerts
            ORDER BY detected_at DESC, alert_id LIMIT {_LATEST_ALERTS}""",
        )
        part["alert_count"] = _rows(con, have, "fraud_alerts", "SELECT count(*) AS n FROM fraud_alerts")
        part["dead_letters"] = _rows(
            con,
            have,
            "dead_letter",
            """
            SELECT reason, count(*) AS count FROM dead_letter GROUP BY reason ORDER BY count DESC, reason""",
        )
    return part


def _health(sources: DashboardSources, now: float) -> dict[str, Any]:
    health: dict[str, Any] = {}
    if sources.progress_dir is None:
        return health
    for path in sorted(sources.progress_dir.glob("*.progress.json")):
        job, progress = path.name.removesuffix(".progress.json"), read_job_progress(path)
        if progress is None:
            continue
        with sources._lock:
            samples = sources._samples.setdefault(job, [])
            if not samples or progress.at > samples[-1].at:
                samples.append(progress)
            bases = [p for p in samples if p.at <= samples[-1].at - RATE_SPAN_S]
            del samples[: max(0, len(bases) - 1)]  # keep the newest base and what follows
            latest, base = samples[-1], (bases[-1] if bases else samples[0])
        span = latest.at - base.at
        health[job] = {
            "pulled": latest.pulled,
            "processed": latest.acked,
            "in_per_s": (latest.pulled - base.pulled) / span if span > 0 else 0.0,
            "processed_per_s": (latest.acked - base.acked) / span if span > 0 else 0.0,
            "watermark_lag_s": None if latest.watermark_ms is None else now - latest.watermark_ms / 1000,
            "updated_s_ago": now - latest.at,
        }
    return health


def _deliveries(log: Path | None) -> dict[str, dict[str, Any]]:
    """alert_id -> what the webhook sink recorded for it."""
    delivered: dict[str, dict[str, Any]] = {}
    for record in sink_records(log) if log is not None else []:
        body = record.get("body")
        if record.get("verdict") == "alert" and isinstance(body, dict) and body.get("alert_id"):
            delivered.setdefault(body["alert_id"], {"received_at": record.get("received_at")})
    return delivered


def summary(sources: DashboardSources) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values."""
    now = time.time()
    result: dict[str, Any] = {
        "generated_at": now,
        "warehouse": _warehouse_part(sources.warehouse),
        "health": _health(sources, now),
    }
    deliveries = _deliveries(sources.alerts_log)
    for alert in result["warehouse"].get("alerts", []):
        delivery = deliveries.get(alert["alert_id"])
        alert["delivery"] = (
            ("delivered" if delivery else "pending") if sources.alerts_log is not None else "not tracked"
        )
        alert["delivered_at"] = delivery["received_at"] if delivery else None
    result["deliveries"] = len(deliveries)
    if sources.cdc_warehouse is not None and sources.cdc_warehouse.exists():
        result["cdc"] = {"changes": _changes(sources.cdc_warehouse)}
    return result


def _changes(location: WarehouseLocation) -> list[dict[str, Any]]:
    """Rows per captured table's changelog (the declared ones, as `pulumi up` deploys them)."""
    changelogs = [changelog_name(t) for t in sorted(captured_tables(DebeziumServerConfig.load()) or {})]
    try:
        with open_warehouse(location, changelogs, every_s=BIGQUERY_EVERY_S) as reading:
            con = reading.connection
            have = {n for (n,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            return [
                {
                    "table": name.removesuffix("_changelog"),
                    "rows": con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0],
                }
                for name in changelogs
                if name in have
            ]
    except (WarehouseBusy, WarehouseUnavailable):
        return []


def create_app(sources: DashboardSources) -> Flask:
    app = Flask(__name__, static_folder=None)
    plotly_js = resources.files("plotly") / "package_data" / "plotly.min.js"

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name, max_age=3600)

    @app.get("/vendor/plotly.min.js")
    def plotly() -> Response:
        return Response(
            plotly_js.read_bytes(), mimetype="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.get("/api/summary")
    def api_summary() -> Response:
        return jsonify(summary(sources))

    return app
