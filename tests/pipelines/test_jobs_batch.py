"""Golden tests: simulator output through `all` in batch mode, checked against SQL in DuckDB
over the same raw files (tests/support/reference.py) and the simulator's ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from beam_pipelines.common.io import parse_input, parse_warehouse
from beam_pipelines.requests import JobRequest
from beam_pipelines.runner import JobReport, pipeline_options, run
from streamforge.config import load_config
from tests.support.reference import (
    fraud_matches,
    load,
    revenue_by_category_region,
    revenue_per_minute,
    session_windows,
    sql_rules,
)

pytestmark = pytest.mark.slow
GAP_MS = 30 * 60_000


def run_all(directory: Path, warehouse: Path, job: str = "all") -> JobReport:
    streams = {"all": ("clickstream", "orders"), "sessions": ("clickstream",)}.get(job, ("orders",))
    inputs = {s: parse_input(f"file://{directory / (s + '.jsonl')}") for s in streams}
    request = JobRequest(job, inputs, parse_warehouse(f"duckdb://{warehouse}"), load_config())
    return run(request, pipeline_options(request))


class Outcome:
    def __init__(self, directory: Path, warehouse: Path, report: JobReport, *, faulty: bool):
        self.directory, self.report = directory, report
        self.warehouse = duckdb.connect(str(warehouse), read_only=True)
        self.warehouse.execute("SET TimeZone = 'UTC'")
        self.reference = load(directory, skip_malformed=faulty)
        self.summary = json.loads((directory / "summary.json").read_text())

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.warehouse.execute(sql).fetchall()


@pytest.fixture(scope="module")
def clean(default_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    warehouse = tmp_path_factory.mktemp("clean") / "warehouse.duckdb"
    return Outcome(default_run, warehouse, run_all(default_run, warehouse), faulty=False)


@pytest.fixture(scope="module")
def faulty(faulty_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    warehouse = tmp_path_factory.mktemp("faulty") / "warehouse.duckdb"
    return Outcome(faulty_run, warehouse, run_all(faulty_run, warehouse), faulty=True)


@pytest.fixture(params=["clean", "faulty"])
def outcome(request: pytest.FixtureRequest) -> Outcome:
    return request.getfixturevalue(request.param)


def test_every_message_is_accounted_for(outcome: Outcome) -> None:
    malformed = sum(outcome.summary.get("malformed", {}).values())
    duplicates = outcome.summary.get("duplicates", 0)
    totals = {"read": 0, "unique": 0, "dead": 0, "dupes": 0}
    for stream, table in (("clickstream", "clicks"), ("orders", "orders")):
        read, unique, dead, dupes = outcome.report.accounting(stream)
        assert read == unique + dead + dupes
        ((expected_unique,),) = outcome.reference.execute(f"SELECT count(*) FROM {table}").fetchall()
        assert unique == expected_unique, stream
        lines = sum(1 for _ in (outcome.directory / f"{stream}.jsonl").open("rb"))
        assert read == lines
        for key, value in zip(totals, (read, unique, dead, dupes)):
            totals[key] += value
    assert totals["dead"] == malformed
    assert totals["dupes"] == duplicates
    assert outcome.rows("SELECT count(*) FROM dead_letter") == [(malformed,)]
    # each job saw every unique event of its stream
    counters = outcome.report.counters
    assert counters["sessions"]["events"] == outcome.report.accounting("clickstream")[1]
    assert counters["revenue"]["events"] == counters["fraud"]["events"] == outcome.report.accounting("orders")[1]


def test_sessions_equal_sql_sessionization(outcome: Outcome) -> None:
    expected = outcome.reference.execute(f"""
        SELECT user_id, session_start, session_end, event_count, page_views, product_views, add_to_cart_count,
               remove_from_cart_count, checkout_count, purchase_count, total_revenue, device_type, geo_region,
               primary_category
        FROM ({session_windows(outcome.reference, GAP_MS).sql_query()}) ORDER BY ALL""").fetchall()
    actual = outcome.rows("""
        SELECT user_id, session_start, session_end, event_count, page_views, product_views, add_to_cart_count,
               remove_from_cart_count, checkout_count, purchase_count, total_revenue, device_type, geo_region,
               primary_category
        FROM user_sessions ORDER BY ALL""")
    assert len(actual) > 10_000
    assert actual == expected


def test_session_columns_are_consistent(clean: Outcome) -> None:
    bad = clean.rows("""
        SELECT session_id FROM user_sessions
        WHERE duration_seconds <> (epoch_ms(session_end) - epoch_ms(session_start)) / 1000
           OR converted <> (purchase_count > 0)
           OR cart_abandoned <> (add_to_cart_count > 0 AND purchase_count = 0)
           OR pane_timing <> 'ON_TIME'""")
    assert bad == []
    assert clean.rows("SELECT count(*) = count(DISTINCT session_id) FROM user_sessions") == [(True,)]


def test_revenue_per_minute_equals_sql_to_the_cent(outcome: Outcome) -> None:
    expected = outcome.reference.execute(f"""
        SELECT window_start, gmv, order_count, units, unique_users, first_time_orders, cancelled_gmv
        FROM ({revenue_per_minute(outcome.reference).sql_query()}) ORDER BY 1""").fetchall()
    actual = outcome.rows("""
        SELECT window_start, gmv, order_count, units, unique_users, first_time_orders, cancelled_gmv
        FROM revenue_per_minute ORDER BY 1""")
    assert len(actual) > 50
    assert actual == expected
    assert outcome.rows(
        "SELECT count(*) FROM revenue_per_minute WHERE window_end - window_start <> INTERVAL 1 MINUTE "
        # half-up to the cent, in exact integer arithmetic (a DOUBLE division would round 267.275 down)
        "OR (order_count > 0 AND CAST(avg_order_value * 100 AS BIGINT) <> "
        "(2 * CAST(gmv * 100 AS BIGINT) + order_count) // (2 * order_count))"
    ) == [(0,)]


def test_revenue_by_category_region_equals_sql(outcome: Outcome) -> None:
    expected = outcome.reference.execute(f"""
        SELECT window_start, region, category, gmv, units, order_count
        FROM ({revenue_by_category_region(outcome.reference).sql_query()}) ORDER BY ALL""").fetchall()
    actual = outcome.rows(
        "SELECT window_start, region, category, gmv, units, order_count FROM revenue_by_category_region ORDER BY ALL"
    )
    assert len(actual) > 100
    assert actual == expected


def _labels(directory: Path) -> set[tuple[str, str]]:
    with (directory / "fraud_labels.jsonl").open() as fh:
        return {(case["pattern"], case["user_id"]) for case in map(json.loads, fh)}


def test_fraud_alerts_match_the_ground_truth(outcome: Outcome) -> None:
    alerts = outcome.rows("SELECT alert_type, user_id FROM fraud_alerts")
    found, truth = set(alerts), _labels(outcome.directory)
    precision = len(found & truth) / len(found)
    recall = len(found & truth) / len(truth)
    assert precision >= 0.90 and recall >= 0.95, (precision, recall)
    assert found == truth  # in fact exact: the simulator's cases are unambiguous
    assert len(alerts) == outcome.rows("SELECT count(*) FROM fraud_alerts")[0][0]  # one alert per instance here


def test_fraud_alerts_equal_the_sql_rules(clean: Outcome) -> None:
    assert set(clean.rows("SELECT alert_type, user_id FROM fraud_alerts")) == fraud_matches(
        clean.reference, sql_rules(load_config().fraud)
    )


def test_alert_rows_are_complete(clean: Outcome) -> None:
    rows = clean.rows("""
        SELECT a.alert_id, len(a.related_event_ids), a.risk_score, a.description, a.order_id,
               (SELECT count(*) FROM unnest(a.related_event_ids) AS r(id)) AS related
        FROM fraud_alerts a""")
    assert all(
        len(alert_id) == 32 and n >= 1 and 0 < score <= 1 and description and order_id
        for alert_id, n, score, description, order_id, _ in rows
    )
    related = {r for (ids,) in clean.rows("SELECT related_event_ids FROM fraud_alerts") for r in ids}
    known = {r for (r,) in clean.reference.execute("SELECT event_id FROM orders").fetchall()}
    assert related <= known


def test_dead_letters_keep_the_payload_and_reason(faulty: Outcome) -> None:
    import base64

    rows = faulty.rows("SELECT reason, error, payload, payload_encoding, pipeline, step FROM dead_letter")
    reasons = {reason for reason, *_ in rows}
    assert reasons <= {"invalid_json", "invalid_event"} and len(reasons) == 2
    originals = {
        line.rstrip(b"\n")
        for name in ("clickstream.jsonl", "orders.jsonl")
        for line in (faulty.directory / name).open("rb")
    }
    for _reason, error, payload, encoding, pipeline, step in rows:
        raw = payload.encode() if encoding == "utf8" else base64.b64decode(payload)
        assert raw in originals
        assert pipeline == "all" and step in ("Parse clickstream", "Parse orders") and error


def test_a_second_run_into_the_same_warehouse_changes_no_result(
    default_run: Path, clean: Outcome, tmp_path: Path
) -> None:
    """Result tables are keyed: running the fraud job again adds no alert and no row."""
    warehouse = tmp_path / "w.duckdb"
    run_all(default_run, warehouse, "fraud")
    first = duckdb.connect(str(warehouse)).execute("SELECT alert_id FROM fraud_alerts ORDER BY 1").fetchall()
    run_all(default_run, warehouse, "fraud")
    again = duckdb.connect(str(warehouse)).execute("SELECT alert_id FROM fraud_alerts ORDER BY 1").fetchall()
    assert first == again == clean.rows("SELECT alert_id FROM fraud_alerts ORDER BY 1")
