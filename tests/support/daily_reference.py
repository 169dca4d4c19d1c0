"""The daily batch's metrics written again as DuckDB SQL: the independent computation the batch
tests (and benchmarks/batch_daily.py) hold the Spark job to.

``create_inputs`` makes the views ``orders`` and ``clicks`` (one row per valid event_id) from
JSON lines — cleaned with the Python validator the pipelines use, not with the batch's Spark
checks — or from Parquet. ``compute`` returns each table's rows as sorted tuples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from streamforge.schemas import InvalidEvent, get_schema

__all__ = ["TABLE_SQL", "clean_lines", "compute", "create_inputs"]


def clean_lines(path: Path, subject: str, target: Path) -> dict[str, int]:
    """The valid messages of a JSONL file, the first of each event_id, as JSONL in ``target``;
    returns the counts (input, valid, rejected, duplicates) by the Python validator."""
    schema = get_schema(subject)
    seen: set[str] = set()
    counts = {"input": 0, "valid": 0, "rejected": 0, "duplicates": 0}
    with open(path, "rb") as source, open(target, "wb") as out:
        for line in source:
            counts["input"] += 1
            try:
                record = schema.from_json(line.rstrip(b"\n"))
            except InvalidEvent:
                counts["rejected"] += 1
                continue
            if record["event_id"] in seen:
                counts["duplicates"] += 1
                continue
            seen.add(record["event_id"])
            counts["valid"] += 1
            out.write(schema.to_json(record, validate=False) + b"\n")
    return counts


_ORDER_COLUMNS = """{'event_id': 'VARCHAR', 'order_id': 'VARCHAR', 'user_id': 'VARCHAR', 'status': 'VARCHAR',
  'items': 'STRUCT(product_id VARCHAR, category VARCHAR, quantity INTEGER, unit_price DECIMAL(15,2))[]',
  'total_amount': 'DECIMAL(15,2)', 'shipping_region': 'VARCHAR', 'event_time': 'TIMESTAMPTZ',
  'is_first_order': 'BOOLEAN'}"""
_CLICK_COLUMNS = """{'event_id': 'VARCHAR', 'user_id': 'VARCHAR', 'session_id': 'VARCHAR', 'event_type': 'VARCHAR',
  'event_time': 'TIMESTAMPTZ'}"""


def create_inputs(con: duckdb.DuckDBPyConnection, *, orders: Path, clicks: Path, parquet: bool = False) -> None:
    """Views ``orders`` and ``clicks`` over clean JSONL files (clean_lines) or Parquet files/globs."""
    con.execute("SET TimeZone = 'UTC'")
    # An amount divided by a count, rounded half up to the cent, in integers (DuckDB divides
    # decimals as doubles).
    con.execute(
        "CREATE OR REPLACE MACRO money_avg(total, n) AS CASE WHEN n = 0 THEN 0.00::DECIMAL(18,2) ELSE "
        "CAST((CAST(total * 100 AS HUGEINT) * 2 + n) // (2 * n) AS DECIMAL(18,0)) * 0.01::DECIMAL(3,2) END"
    )
    if parquet:
        con.execute(f"CREATE OR REPLACE VIEW orders AS SELECT * FROM read_parquet('{orders}')")
        con.execute(f"CREATE OR REPLACE VIEW clicks AS SELECT * FROM read_parquet('{clicks}')")
        return
    con.execute(
        f"CREATE OR REPLACE VIEW orders AS SELECT * FROM read_json('{orders}', format = 'newline_delimited', "
        f"columns = {_ORDER_COLUMNS})"
    )
    con.execute(
        f"CREATE OR REPLACE VIEW clicks AS SELECT * FROM read_json('{clicks}', format = 'newline_delimited', "
        f"columns = {_CLICK_COLUMNS})"
    )


TABLE_SQL = {
    "daily_revenue": """
        SELECT CAST(event_time AS DATE) AS date,
               COALESCE(SUM(total_amount) FILTER (status = 'PAID'), 0) AS gmv,
               COUNT(*) FILTER (status = 'PAID') AS order_count,
               COALESCE(SUM((SELECT SUM(i.quantity) FROM UNNEST(items) AS u(i))) FILTER (status = 'PAID'), 0) AS units,
               COUNT(DISTINCT user_id) FILTER (status = 'PAID') AS unique_customers,
               money_avg(COALESCE(SUM(total_amount) FILTER (status = 'PAID'), 0), COUNT(*) FILTER (status = 'PAID'))
                 AS avg_order_value,
               COUNT(*) FILTER (status = 'PAID' AND is_first_order) AS first_time_orders,
               COALESCE(SUM(total_amount) FILTER (status = 'CANCELLED'), 0) AS cancelled_gmv
        FROM orders WHERE CAST(event_time AS DATE) BETWEEN $first AND $last GROUP BY 1""",
    "daily_revenue_by_category": """
        WITH lines AS (
            SELECT CAST(event_time AS DATE) AS date, order_id, user_id, UNNEST(items) AS i
            FROM orders WHERE status = 'PAID' AND CAST(event_time AS DATE) BETWEEN $first AND $last)
        SELECT date, i.category AS category, SUM(i.unit_price * i.quantity) AS gmv,
               COUNT(DISTINCT order_id) AS order_count, SUM(i.quantity) AS units,
               money_avg(SUM(i.unit_price * i.quantity), COUNT(DISTINCT order_id)) AS avg_order_value,
               COUNT(DISTINCT user_id) AS unique_customers,
               money_avg(SUM(i.unit_price * i.quantity), COUNT(DISTINCT user_id)) AS revenue_per_customer
        FROM lines GROUP BY 1, 2""",
    "daily_top_regions": """
        WITH regions AS (
            SELECT CAST(event_time AS DATE) AS date, shipping_region AS region, SUM(total_amount) AS gmv,
                   COUNT(*) AS order_count
            FROM orders WHERE status = 'PAID' AND CAST(event_time AS DATE) BETWEEN $first AND $last GROUP BY 1, 2)
        SELECT * FROM (
            SELECT date, ROW_NUMBER() OVER (PARTITION BY date ORDER BY gmv DESC, region) AS rank, region, gmv, order_count
            FROM regions) WHERE rank <= $top""",
    "daily_conversion_funnel": """
        WITH day AS (
            SELECT CAST(event_time AS DATE) AS date, * FROM clicks WHERE CAST(event_time AS DATE) BETWEEN $first AND $last),
        steps(step_order, step) AS (VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'checkout_start'), (4, 'purchase')),
        reached AS (
            SELECT date, step, COUNT(DISTINCT user_id) AS users FROM day JOIN steps ON event_type = step GROUP BY 1, 2),
        view AS (SELECT date, user_id, session_id, MIN(event_time) AS t FROM day WHERE event_type = 'product_view' GROUP BY ALL),
        cart AS (SELECT v.date, v.user_id, v.session_id, MIN(d.event_time) AS t FROM view v JOIN day d
                 ON d.session_id = v.session_id AND d.user_id = v.user_id AND d.date = v.date
                 AND d.event_type = 'add_to_cart' AND d.event_time >= v.t GROUP BY ALL),
        checkout AS (SELECT c.date, c.user_id, c.session_id, MIN(d.event_time) AS t FROM cart c JOIN day d
                 ON d.session_id = c.session_id AND d.user_id = c.user_id AND d.date = c.date
                 AND d.event_type = 'checkout_start' AND d.event_time >= c.t GROUP BY ALL),
        purchase AS (SELECT k.date, k.user_id, k.session_id, MIN(d.event_time) AS t FROM checkout k JOIN day d
                 ON d.session_id = k.session_id AND d.user_id = k.user_id AND d.date = k.date
                 AND d.event_type = 'purchase' AND d.event_time >= k.t GROUP BY ALL),
        strict AS (
            SELECT date, 'product_view' AS step, COUNT(DISTINCT user_id) AS users FROM view GROUP BY 1
            UNION ALL SELECT date, 'add_to_cart', COUNT(DISTINCT user_id) FROM cart GROUP BY 1
            UNION ALL SELECT date, 'checkout_start', COUNT(DISTINCT user_id) FROM checkout GROUP BY 1
            UNION ALL SELECT date, 'purchase', COUNT(DISTINCT user_id) FROM purchase GROUP BY 1),
        grid AS (SELECT DISTINCT d.date, s.step_order, s.step FROM day d, steps s),
        counted AS (
            SELECT g.date, g.step_order, g.step, COALESCE(r.users, 0) AS users, COALESCE(s.users, 0) AS strict_users
            FROM grid g LEFT JOIN reached r USING (date, step) LEFT JOIN strict s USING (date, step))
        SELECT date, step_order, step, users,
               CASE WHEN LAG(users) OVER w > 0 THEN ROUND(users / LAG(users) OVER w, 6) END AS step_conversion,
               CASE WHEN FIRST(users) OVER w > 0 THEN ROUND(users / FIRST(users) OVER w, 6) END AS overall_conversion,
               strict_users,
               CASE WHEN LAG(strict_users) OVER w > 0 THEN ROUND(strict_users / LAG(strict_users) OVER w, 6) END
                 AS strict_step_conversion,
               CASE WHEN FIRST(users) OVER w > 0 THEN ROUND(strict_users / FIRST(users) OVER w, 6) END
                 AS strict_overall_conversion
        FROM counted WINDOW w AS (PARTITION BY date ORDER BY step_order)""",
    "daily_order_status": """
        WITH day AS (
            SELECT CAST(event_time AS DATE) AS date, * FROM orders WHERE CAST(event_time AS DATE) BETWEEN $first AND $last),
        created AS (SELECT DISTINCT date, order_id FROM day WHERE status = 'CREATED'),
        latest AS (
            SELECT d.date, d.order_id,
                   arg_max(d.status, (d.event_time, list_position($statuses, d.status))) AS status,
                   arg_max(d.total_amount, (d.event_time, list_position($statuses, d.status))) AS total_amount
            FROM day d JOIN created c USING (date, order_id) GROUP BY 1, 2)
        SELECT date, status, COUNT(*) AS order_count, SUM(total_amount) AS gmv,
               ROUND(COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY date), 6) AS share
        FROM latest GROUP BY 1, 2""",
}


def compute(con: duckdb.DuckDBPyConnection, first: Any, last: Any, top: int = 10) -> dict[str, list[tuple]]:
    """Every table's rows for the dates ``first``..``last`` (inclusive), sorted."""
    statuses = list(get_schema("order_event").enum_symbols("status"))
    out = {}
    for table, sql in TABLE_SQL.items():
        params = (
            {"first": first, "last": last}
            | ({"top": top} if "$top" in sql else {})
            | ({"statuses": statuses} if "$statuses" in sql else {})
        )
        out[table] = sorted(con.execute(sql, params).fetchall())
    return out
