"""Independent checks in DuckDB SQL over the simulator's raw JSONL files.

Nothing here imports the simulator: these queries restate the fraud-pattern definitions of
docs/simulator.md from scratch, so a test comparing them with the simulator's ground-truth
labels can catch a planner that does not produce what it claims.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

ORDER_COLUMNS = {
    "event_id": "VARCHAR",
    "order_id": "VARCHAR",
    "user_id": "VARCHAR",
    "session_id": "VARCHAR",
    "status": "VARCHAR",
    "items": "STRUCT(product_id VARCHAR, category VARCHAR, quantity INTEGER, unit_price DECIMAL(15,2))[]",
    "subtotal": "DECIMAL(15,2)",
    "discount": "DECIMAL(15,2)",
    "shipping": "DECIMAL(15,2)",
    "total_amount": "DECIMAL(15,2)",
    "payment_method": "VARCHAR",
    "card_fingerprint": "VARCHAR",
    "shipping_region": "VARCHAR",
    "ip_country": "VARCHAR",
    "event_time": "TIMESTAMPTZ",
    "is_first_order": "BOOLEAN",
}
CLICK_COLUMNS = {
    "event_id": "VARCHAR",
    "user_id": "VARCHAR",
    "session_id": "VARCHAR",
    "event_type": "VARCHAR",
    "product_id": "VARCHAR",
    "category": "VARCHAR",
    "price": "DECIMAL(15,2)",
    "quantity": "INTEGER",
    "event_time": "TIMESTAMPTZ",
    "device_type": "VARCHAR",
    "geo_region": "VARCHAR",
    "order_id": "VARCHAR",
}
# Reference points (lat, lon) of the shop's countries, as published in docs/simulator.md.
COUNTRY_POINTS = {
    "US": (39.83, -98.58),
    "CA": (43.65, -79.38),
    "BR": (-23.55, -46.63),
    "GB": (51.51, -0.13),
    "DE": (50.11, 8.68),
    "SE": (59.33, 18.07),
    "IN": (19.08, 72.88),
    "SG": (1.35, 103.82),
    "JP": (35.68, 139.69),
    "AU": (-33.87, 151.21),
}


def _columns(spec: dict[str, str]) -> str:
    return "{" + ", ".join(f"{name}: '{kind}'" for name, kind in spec.items()) + "}"


def load(directory: Path, *, skip_malformed: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB database with ``clicks`` and ``orders`` (valid events, one row per event_id).

    ``skip_malformed``: the files hold injected malformed messages; DuckDB skips what it
    cannot read, and the rest is recognised by the simulator's convention for them (an
    event_id starting with ``bad-``), not by StreamForge's validator.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    lenient = ", ignore_errors = true" if skip_malformed else ""
    for table, name, spec in (
        ("clicks", "clickstream.jsonl", CLICK_COLUMNS),
        ("orders", "orders.jsonl", ORDER_COLUMNS),
    ):
        con.execute(
            f"CREATE TABLE {table} AS SELECT DISTINCT * FROM read_json(?, format = 'newline_delimited', "
            f"columns = {_columns(spec)}{lenient}) WHERE event_id IS NOT NULL AND event_id NOT LIKE 'bad-%'",
            [str(directory / name)],
        )
    con.execute("CREATE TABLE order_items AS SELECT event_id, order_id, unnest(items, recursive := true) FROM orders")
    con.execute("CREATE TABLE countries (code VARCHAR, lat DOUBLE, lon DOUBLE)")
    con.executemany("INSERT INTO countries VALUES (?, ?, ?)", [(c, *p) for c, p in COUNTRY_POINTS.items()])
    return con


def sql_rules(rules: Any) -> dict[str, Any]:
    """The parameters ``fraud_matches`` takes, from a ``FraudRules``."""
    return {
        "rapid_orders_count": rules.rapid_orders_count,
        "rapid_orders_window_ms": int(rules.rapid_orders_window.total_seconds() * 1000),
        "high_value_first_order": float(rules.high_value_first_order),
        "max_travel_speed_kmh": rules.max_travel_speed_kmh,
        "min_travel_distance_km": rules.min_travel_distance_km,
        "card_testing_failed_payments": rules.card_testing_failed_payments,
        "card_testing_distinct_cards": rules.card_testing_distinct_cards,
        "card_testing_window_ms": int(rules.card_testing_window.total_seconds() * 1000),
    }


def fraud_matches(con: duckdb.DuckDBPyConnection, rules: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (pattern, user_id) whose events match a fraud pattern under ``rules``."""
    found: set[tuple[str, str]] = set()
    queries = {
        "RAPID_ORDERS": """
            SELECT DISTINCT user_id FROM (
                SELECT user_id, count(*) OVER (
                    PARTITION BY user_id ORDER BY event_time
                    RANGE BETWEEN to_milliseconds($rapid_ms) PRECEDING AND CURRENT ROW) AS n
                FROM orders WHERE status = 'CREATED')
            WHERE n >= $rapid_count""",
        "HIGH_VALUE_FIRST_ORDER": """
            SELECT DISTINCT user_id FROM orders
            WHERE status = 'CREATED' AND is_first_order AND total_amount > $high_value""",
        "LOCATION_ANOMALY": """
            WITH placed AS (
                SELECT o.event_id, o.user_id, o.event_time, c.lat, c.lon
                FROM orders o JOIN countries c ON c.code = o.ip_country WHERE o.status = 'CREATED'),
            pairs AS (
                SELECT a.user_id,
                       2 * 6371 * asin(sqrt(
                           pow(sin(radians(b.lat - a.lat) / 2), 2)
                           + cos(radians(a.lat)) * cos(radians(b.lat)) * pow(sin(radians(b.lon - a.lon) / 2), 2)
                       )) AS km,
                       epoch_ms(b.event_time) - epoch_ms(a.event_time) AS ms
                FROM placed a JOIN placed b
                  ON a.user_id = b.user_id AND a.event_id <> b.event_id AND a.event_time <= b.event_time)
            SELECT DISTINCT user_id FROM pairs
            WHERE km >= $min_km AND km * 3600000 > $max_kmh * ms""",
        "CARD_TESTING": """
            WITH attempts AS (
                SELECT event_id, user_id, status, card_fingerprint, event_time FROM orders
                WHERE status IN ('PAID', 'PAYMENT_FAILED'))
            SELECT DISTINCT s.user_id
            FROM attempts s JOIN attempts a
              ON a.user_id = s.user_id
             AND a.event_time BETWEEN s.event_time - to_milliseconds($card_ms) AND s.event_time
            WHERE s.status = 'PAID'
            GROUP BY s.event_id, s.user_id
            HAVING count(*) FILTER (WHERE a.status = 'PAYMENT_FAILED') >= $failed
                OR count(DISTINCT a.card_fingerprint) >= $cards""",
    }
    params = {
        "rapid_ms": rules["rapid_orders_window_ms"],
        "rapid_count": rules["rapid_orders_count"],
        "high_value": rules["high_value_first_order"],
        "min_km": rules["min_travel_distance_km"],
        "max_kmh": rules["max_travel_speed_kmh"],
        "card_ms": rules["card_testing_window_ms"],
        "failed": rules["card_testing_failed_payments"],
        "cards": rules["card_testing_distinct_cards"],
    }
    for pattern, sql in queries.items():
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        found |= {(pattern, user) for (user,) in con.execute(sql, used).fetchall()}
    return found


def _numbered_clicks(gap_ms: int) -> str:
    """Clicks with ``n``: the number of the user's session window (gap ``gap_ms``) holding each.

    As in Beam's Sessions: each event opens [t, t + gap) and overlapping windows merge, so
    the next event continues a session when it comes less than a gap later.
    """
    return f"""
        WITH marked AS (
            SELECT *, CASE WHEN epoch_ms(event_time) - epoch_ms(lag(event_time) OVER w) < {gap_ms}
                           THEN 0 ELSE 1 END AS starts
            FROM clicks WINDOW w AS (PARTITION BY user_id ORDER BY event_time, event_id))
        SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY event_time, event_id ROWS UNBOUNDED PRECEDING) AS n
        FROM marked"""


def sessionize(con: duckdb.DuckDBPyConnection, gap_ms: int) -> duckdb.DuckDBPyRelation:
    """Session windows of the clickstream by user with an inactivity gap: one row per window."""
    return con.sql(
        f"""
        SELECT user_id, n, count(DISTINCT session_id) AS client_sessions, count(*) AS events
        FROM ({_numbered_clicks(gap_ms)}) GROUP BY user_id, n
        """
    )


def session_windows(con: duckdb.DuckDBPyConnection, gap_ms: int) -> duckdb.DuckDBPyRelation:
    """The user_sessions columns of every session window, computed in SQL."""
    return con.sql(
        f"""
        WITH numbered AS ({_numbered_clicks(gap_ms)}),
        viewed AS (
            SELECT user_id, n, category, count(*) AS views FROM numbered
            WHERE event_type = 'product_view' GROUP BY ALL),
        favourite AS (
            SELECT user_id, n, first(category ORDER BY views DESC, category) AS primary_category
            FROM viewed GROUP BY ALL)
        SELECT user_id, n, min(event_time) AS session_start, max(event_time) AS session_end,
               count(*) AS event_count,
               count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
               count(*) FILTER (WHERE event_type = 'product_view') AS product_views,
               count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_cart_count,
               count(*) FILTER (WHERE event_type = 'remove_from_cart') AS remove_from_cart_count,
               count(*) FILTER (WHERE event_type = 'checkout_start') AS checkout_count,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchase_count,
               coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) AS total_revenue,
               first(device_type ORDER BY event_time, event_id) AS device_type,
               first(geo_region ORDER BY event_time, event_id) AS geo_region,
               any_value(f.primary_category) AS primary_category,
               list(event_id) AS event_ids
        FROM numbered LEFT JOIN favourite f USING (user_id, n)
        GROUP BY user_id, n
        """
    )


def revenue_per_minute(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """revenue_per_minute in SQL: windows with a PAID or CANCELLED event."""
    return con.sql(
        """
        WITH units AS (SELECT event_id, sum(quantity) AS units FROM order_items GROUP BY 1)
        SELECT time_bucket(INTERVAL 1 MINUTE, event_time) AS window_start,
               coalesce(sum(total_amount) FILTER (WHERE status = 'PAID'), 0) AS gmv,
               count(*) FILTER (WHERE status = 'PAID') AS order_count,
               coalesce(sum(units) FILTER (WHERE status = 'PAID'), 0) AS units,
               count(DISTINCT user_id) FILTER (WHERE status = 'PAID') AS unique_users,
               count(*) FILTER (WHERE status = 'PAID' AND is_first_order) AS first_time_orders,
               coalesce(sum(total_amount) FILTER (WHERE status = 'CANCELLED'), 0) AS cancelled_gmv
        FROM orders LEFT JOIN units USING (event_id)
        WHERE status IN ('PAID', 'CANCELLED')
        GROUP BY 1
        """
    )


def revenue_by_category_region(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """revenue_by_category_region in SQL, over PAID order lines."""
    return con.sql(
        """
        SELECT time_bucket(INTERVAL 1 MINUTE, o.event_time) AS window_start, o.shipping_region AS region,
               i.category, sum(i.quantity * i.unit_price) AS gmv, sum(i.quantity) AS units,
               count(DISTINCT o.order_id) AS order_count
        FROM orders o JOIN order_items i USING (event_id)
        WHERE o.status = 'PAID'
        GROUP BY ALL
        """
    )
