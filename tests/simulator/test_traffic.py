"""The simulated shop behaves like a shop: checked in SQL over the default two-hour run."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pytest

from streamforge.schemas import get_schema
from streamforge.simulator.profile import DEFAULT_PROFILE
from tests.support.reference import load, sessionize


@pytest.fixture(scope="module")
def con(default_run: Path) -> duckdb.DuckDBPyConnection:
    return load(default_run)


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    return con.execute(sql).fetchone()[0]


def test_every_event_is_valid_and_unique(default_run: Path) -> None:
    for name, subject in (("clickstream.jsonl", "clickstream_event"), ("orders.jsonl", "order_event")):
        schema, ids = get_schema(subject), set()
        lines = (default_run / name).read_bytes().splitlines()
        for line in lines:
            ids.add(schema.from_json(line)["event_id"])
        assert len(ids) == len(lines) > 1000


def test_files_are_in_event_time_order(default_run: Path) -> None:
    for name in ("clickstream.jsonl", "orders.jsonl"):
        times = [orjson.loads(line)["event_time"] for line in (default_run / name).read_bytes().splitlines()]
        assert times == sorted(times), name


def test_summary_counts_match_the_files(default_run: Path, con: duckdb.DuckDBPyConnection) -> None:
    summary = orjson.loads((default_run / "summary.json").read_bytes())
    by_type = dict(con.execute("SELECT event_type, count(*) FROM clicks GROUP BY 1").fetchall())
    by_status = dict(con.execute("SELECT status, count(*) FROM orders GROUP BY 1").fetchall())
    assert summary["clickstream_events"] == by_type
    assert summary["order_events"] == by_status
    assert summary["messages"] == sum(by_type.values()) + sum(by_status.values())
    assert summary["sim_start"] == "2026-11-01T08:00:00.000Z" and summary["sim_end"] == "2026-11-01T10:00:00.000Z"


def test_session_arrivals_follow_the_configured_rate(con: duckdb.DuckDBPyConnection) -> None:
    sessions = _one(con, "SELECT count(DISTINCT session_id) FROM clicks")
    assert sessions == pytest.approx(3.0 * 7200, rel=0.05)  # sessions_per_second x 2 h


@pytest.mark.parametrize(
    "column, weights", [("device_type", DEFAULT_PROFILE.devices), ("geo_region", DEFAULT_PROFILE.regions)]
)
def test_device_and_region_mix(con: duckdb.DuckDBPyConnection, column: str, weights: dict[str, float]) -> None:
    rows = con.execute(
        f"SELECT {column}, count(*) FROM (SELECT DISTINCT session_id, {column} FROM clicks) GROUP BY 1"
    ).fetchall()
    total = sum(n for _, n in rows)
    shares = {key: n / total for key, n in rows}
    assert set(shares) == set(weights)
    for key, weight in weights.items():
        assert shares[key] == pytest.approx(weight / sum(weights.values()), abs=0.02), key


def test_the_funnel_narrows(con: duckdb.DuckDBPyConnection) -> None:
    reached = dict(con.execute("SELECT event_type, count(DISTINCT session_id) FROM clicks GROUP BY 1").fetchall())
    sessions = _one(con, "SELECT count(DISTINCT session_id) FROM clicks")
    assert reached["page_view"] == sessions  # every visit lands on a page
    assert sessions > reached["product_view"] > reached["add_to_cart"] > reached["checkout_start"] > reached["purchase"]
    assert 0.03 < reached["purchase"] / sessions < 0.15
    assert reached["remove_from_cart"] > 0
    abandoned = _one(
        con,
        """
        SELECT count(*) FROM (SELECT session_id FROM clicks GROUP BY 1
        HAVING bool_or(event_type = 'add_to_cart') AND NOT bool_or(event_type = 'purchase'))""",
    )
    assert abandoned > reached["purchase"]  # most carts are abandoned, as in real shops


def test_sessions_are_one_user_one_device_in_order(con: duckdb.DuckDBPyConnection) -> None:
    assert (
        _one(
            con,
            """
        SELECT count(*) FROM (SELECT session_id FROM clicks GROUP BY 1
        HAVING count(DISTINCT user_id) > 1 OR count(DISTINCT device_type) > 1 OR count(DISTINCT geo_region) > 1)""",
        )
        == 0
    )
    first = dict(
        con.execute("""
        SELECT event_type, count(*) FROM (
            SELECT event_type, row_number() OVER (PARTITION BY session_id ORDER BY event_time) AS n FROM clicks)
        WHERE n = 1 GROUP BY 1""").fetchall()
    )
    assert set(first) == {"page_view"}


def test_client_sessions_are_session_windows(default_run: Path, con: duckdb.DuckDBPyConnection) -> None:
    """With the 30-minute gap, each simulated visit is exactly one session window, except the
    intruder's visit in a LOCATION_ANOMALY, which joins its victim's window (a takeover whose
    second order falls after the end of the run has no label, but its visits are there)."""
    windows = sessionize(con, 30 * 60_000).fetchall()
    merged = {user for user, _, client_sessions, _ in windows if client_sessions != 1}
    labels = [orjson.loads(line) for line in (default_run / "fraud_labels.jsonl").read_bytes().splitlines()]
    takeovers = {label["user_id"] for label in labels if label["pattern"] == "LOCATION_ANOMALY"}
    unfinished = {
        user
        for (user,) in con.execute("""
        SELECT user_id FROM clicks GROUP BY user_id
        HAVING max(event_time) > TIMESTAMPTZ '2026-11-01 09:30:00+00'
           AND count(DISTINCT device_type) FILTER (WHERE event_time > TIMESTAMPTZ '2026-11-01 09:30:00+00') > 1""").fetchall()
    }
    assert takeovers <= merged
    assert merged - takeovers <= unfinished
    # No visit is split over two windows, and a window never holds more than two visits.
    assert sum(c for _, _, c, _ in windows) == _one(con, "SELECT count(DISTINCT session_id) FROM clicks")
    assert max(c for _, _, c, _ in windows) == 2


def test_purchases_match_created_orders(con: duckdb.DuckDBPyConnection) -> None:
    pairs = con.execute("""
        SELECT c.event_id IS NOT NULL, o.event_id IS NOT NULL,
               c.user_id = o.user_id AND c.session_id = o.session_id AND c.price = o.total_amount
               AND c.event_time = o.event_time
        FROM (SELECT * FROM clicks WHERE event_type = 'purchase') c
        FULL JOIN (SELECT * FROM orders WHERE status = 'CREATED') o USING (order_id)""").fetchall()
    assert len(pairs) > 1000
    assert set(pairs) == {(True, True, True)}


def test_order_lifecycles_are_valid(con: duckdb.DuckDBPyConnection) -> None:
    transitions = con.execute("""
        SELECT prev, status, count(*) FROM (
            SELECT status, lag(status) OVER (PARTITION BY order_id ORDER BY event_time, status = 'CREATED' DESC) AS prev
            FROM orders)
        GROUP BY 1, 2""").fetchall()
    allowed = {
        (None, "CREATED"),
        ("CREATED", "PAID"),
        ("CREATED", "PAYMENT_FAILED"),
        ("PAYMENT_FAILED", "PAID"),
        ("PAYMENT_FAILED", "PAYMENT_FAILED"),
        ("PAID", "SHIPPED"),
        ("PAID", "CANCELLED"),
        ("SHIPPED", "DELIVERED"),
    }
    seen = {(prev, status) for prev, status, _ in transitions}
    assert seen <= allowed, seen - allowed
    assert {("CREATED", "PAID"), ("CREATED", "PAYMENT_FAILED"), ("PAID", "CANCELLED"), ("PAID", "SHIPPED")} <= seen


def test_order_snapshots_agree(con: duckdb.DuckDBPyConnection) -> None:
    """Every event of an order carries the same lines and amounts; amounts add up."""
    assert (
        _one(
            con,
            """
        SELECT count(*) FROM (SELECT order_id FROM orders GROUP BY 1
        HAVING count(DISTINCT (user_id, total_amount, subtotal, discount, shipping, shipping_region, ip_country)) > 1)""",
        )
        == 0
    )
    assert (
        _one(
            con,
            "SELECT count(*) FROM orders WHERE total_amount <> subtotal - discount + shipping OR discount > subtotal",
        )
        == 0
    )


def test_payments(con: duckdb.DuckDBPyConnection) -> None:
    attempts = dict(
        con.execute(
            "SELECT status, count(*) FROM orders WHERE status IN ('PAID', 'PAYMENT_FAILED') GROUP BY 1"
        ).fetchall()
    )
    failure_share = attempts["PAYMENT_FAILED"] / (attempts["PAID"] + attempts["PAYMENT_FAILED"])
    assert 0.02 < failure_share < 0.12  # 4% of normal payments fail, card testers add bursts
    methods = dict(
        con.execute("SELECT payment_method, count(*) FROM orders WHERE status = 'CREATED' GROUP BY 1").fetchall()
    )
    assert set(methods) == set(DEFAULT_PROFILE.payment_methods) and max(methods, key=methods.get) == "card"
    assert _one(con, "SELECT count(*) FROM orders WHERE payment_method = 'card' AND card_fingerprint IS NULL") == 0


def test_first_orders(con: duckdb.DuckDBPyConnection) -> None:
    assert (
        _one(
            con,
            """
        SELECT count(*) FROM (SELECT user_id FROM orders WHERE status = 'CREATED' AND is_first_order GROUP BY 1 HAVING count(*) > 1)""",
        )
        == 0
    )
    assert (
        _one(
            con,
            """
        SELECT count(*) FROM orders f JOIN orders e ON e.user_id = f.user_id AND e.status = 'CREATED' AND e.event_time < f.event_time
        WHERE f.status = 'CREATED' AND f.is_first_order""",
        )
        == 0
    )
    share = _one(con, "SELECT avg(is_first_order::INT) FROM orders WHERE status = 'CREATED'")
    assert 0.2 < share < 0.8


def test_the_catalogue_is_consistent(con: duckdb.DuckDBPyConnection) -> None:
    assert (
        _one(
            con,
            """
        SELECT count(*) FROM (SELECT product_id FROM clicks WHERE product_id IS NOT NULL GROUP BY 1
        HAVING count(DISTINCT category) > 1 OR count(DISTINCT price) > 1)""",
        )
        == 0
    )
    categories = _one(con, "SELECT count(DISTINCT category) FROM clicks WHERE event_type = 'product_view'")
    assert categories == 10
