"""The dashboard in a real browser: Debian's chromium driven by Playwright (no browser download).

A warehouse from a short simulation (batch `run all`) and a webhook sink log that delivered
one alert; the page must show the warehouse's numbers (SQL on the same file) in its tiles,
chart and tables, and each alert's delivery. A screenshot is kept in out/test-artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from streamforge.services import free_port, stop_process, wait_for_port
from tests.support.browser import chromium_page, require_chromium
from tests.support.cli import run_entry_point, start_entry_point

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    require_chromium()
    tmp = tmp_path_factory.mktemp("dashboard")
    run_entry_point(
        "simulate",
        "--output",
        f"file://{tmp}/events",
        "--duration",
        "40m",
        "--malformed",
        "0.01",
        "--fraud-rate",
        "0.05",
        "-q",
    )
    warehouse = tmp / "warehouse.duckdb"
    run_entry_point(
        "run", "all", "--input", f"file://{tmp}/events", "--warehouse", f"duckdb://{warehouse}", "-q", timeout=300
    )
    con = duckdb.connect(str(warehouse), read_only=True)
    delivered_id = con.execute(
        "SELECT alert_id FROM fraud_alerts ORDER BY detected_at DESC, alert_id LIMIT 1"
    ).fetchone()[0]
    con.close()
    sink_log = tmp / "webhook-sink.log"
    sink_log.write_text(
        json.dumps(
            {
                "verdict": "alert",
                "path": "/alerts",
                "received_at": "2026-12-03T10:00:00+00:00",
                "idempotency_key": delivered_id,
                "reason": None,
                "body": {"alert_id": delivered_id},
            }
        )
        + "\n"
    )
    port = free_port()
    log = tmp / "dashboard.log"
    process = start_entry_point(
        "dashboard", "--warehouse", str(warehouse), "--port", str(port), "--alerts-log", str(sink_log), log=log
    )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}/", warehouse, delivered_id
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def page(served):
    with chromium_page(served[0]) as page:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        yield page


def _sql(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def _cells(page, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
    )


def test_tiles_show_sessions_and_conversion(page, served) -> None:
    ((sessions, conversion),) = _sql(served[1], "SELECT count(*), 100 * avg(converted::INT) FROM user_sessions")
    assert page.text_content("#sessions-count") == f"{sessions:,}"
    assert page.text_content("#conversion") == f"{conversion:.1f} %"
    ((open_sessions, users, events),) = _sql(
        served[1],
        "SELECT count(*) FILTER (WHERE pane_timing = 'EARLY'), count(DISTINCT user_id), sum(event_count) "
        "FROM user_sessions",
    )
    assert page.text_content("#sessions-users") == f"{open_sessions:,} open · {users:,} users · {events:,} events"


def test_the_chart_draws_revenue_per_minute(page, served) -> None:
    expected = _sql(
        served[1],
        "SELECT gmv FROM (SELECT window_start, gmv FROM revenue_per_minute "
        "ORDER BY window_start DESC LIMIT 60) ORDER BY window_start",
    )
    drawn = page.evaluate("document.getElementById('revenue-chart').data[0].y")
    assert drawn == pytest.approx([float(g) for (g,) in expected])
    assert page.locator("#revenue-chart .bars path").count() >= len([g for (g,) in expected if g > 0])


def test_tables_show_regions_categories_and_dead_letters(page, served) -> None:
    regions = _sql(
        served[1],
        "SELECT region, sum(gmv), sum(order_count) FROM revenue_by_category_region GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    assert _cells(page, "regions") == [[r, f"{g:,.2f}", f"{n:,}"] for r, g, n in regions]
    categories = _sql(served[1], "SELECT category FROM revenue_by_category_region GROUP BY 1 ORDER BY sum(gmv) DESC, 1")
    assert [row[0] for row in _cells(page, "categories")] == [c for (c,) in categories]
    dead = _sql(served[1], "SELECT reason, count(*) FROM dead_letter GROUP BY 1 ORDER BY 2 DESC, 1")
    assert _cells(page, "dead-letters") == [[r, f"{n:,}"] for r, n in dead]


def test_alerts_show_their_webhook_delivery(page, served) -> None:
    (total,) = _sql(served[1], "SELECT count(*) FROM fraud_alerts")[0]
    rows = _cells(page, "alerts")
    assert len(rows) == min(total, 20) and total > 1
    statuses = [row[-1] for row in rows]
    assert statuses[0].startswith("delivered") and set(statuses[1:]) == {"pending"}
    first = _sql(served[1], "SELECT alert_type, user_id FROM fraud_alerts ORDER BY detected_at DESC, alert_id LIMIT 1")[
        0
    ]
    assert rows[0][1:3] == list(first)
    assert page.text_content("#alert-summary") == f"{total:,} in all, 1 delivered to the webhook"
