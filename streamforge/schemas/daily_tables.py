"""The daily batch's output tables (batch/): their columns and types, declared once.

Every table is partitioned by ``date`` (the UTC day of the events); writing a date replaces
that date's rows and nothing else. The Parquet datasets, the DuckDB tables and the BigQuery
tables (created by the infrastructure program, written by the Spark BigQuery connector) all
take their columns from here. The declarations need no PySpark, so the infrastructure
program reads them without it; ``batch/frames.py`` gives their Spark form. (The daily job's
zip for Dataproc carries this file: batch/packaging.py.)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COLUMN_TYPES", "TABLES", "Table", "bigquery_schema"]

#: A column's kind -> (BigQuery type, DuckDB type, Spark SQL type). Money is DECIMAL(18,2),
#: which the Spark BigQuery connector writes as NUMERIC.
COLUMN_TYPES = {
    "string": ("STRING", "VARCHAR", "string"),
    "long": ("INTEGER", "BIGINT", "bigint"),
    "double": ("FLOAT", "DOUBLE", "double"),
    "date": ("DATE", "DATE", "date"),
    "money": ("NUMERIC", "DECIMAL(18,2)", "decimal(18,2)"),
}
_S, _L, _D, _DATE = "string", "long", "double", "date"


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[tuple[str, str, str], ...]  # name, kind (a COLUMN_TYPES key), meaning


def bigquery_schema(table: Table) -> list[dict[str, str]]:
    """The ``schema.fields`` of the table in BigQuery: what the connector writes (all NULLABLE)."""
    return [
        {"name": name, "type": COLUMN_TYPES[kind][0], "mode": "NULLABLE", "description": meaning}
        for name, kind, meaning in table.columns
    ]


TABLES = {
    t.name: t
    for t in (
        Table(
            "daily_revenue",
            "The day's PAID orders: the batch side of the reconciliation with revenue_per_minute.",
            (
                ("date", _DATE, "UTC day of the order events"),
                ("gmv", "money", "sum of total_amount of PAID events"),
                ("order_count", _L, "PAID events"),
                ("units", _L, "sum of item quantities of PAID events"),
                ("unique_customers", _L, "distinct user_id of PAID events"),
                ("avg_order_value", "money", "gmv / order_count, rounded half up to the cent (0 without orders)"),
                ("first_time_orders", _L, "PAID events with is_first_order"),
                ("cancelled_gmv", "money", "sum of total_amount of CANCELLED events"),
            ),
        ),
        Table(
            "daily_revenue_by_category",
            "PAID order lines by product category.",
            (
                ("date", _DATE, "UTC day"),
                ("category", _S, "the line's product category"),
                ("gmv", "money", "sum of quantity * unit_price of the category's lines"),
                ("order_count", _L, "distinct orders with a line in the category"),
                ("units", _L, "sum of the lines' quantities"),
                ("avg_order_value", "money", "gmv / order_count, rounded half up"),
                ("unique_customers", _L, "distinct buyers of the category"),
                ("revenue_per_customer", "money", "gmv / unique_customers, rounded half up"),
            ),
        ),
        Table(
            "daily_top_regions",
            "Shipping regions by the gmv of their PAID orders, the top N of the day.",
            (
                ("date", _DATE, "UTC day"),
                ("rank", _L, "1 = the highest gmv (ties: region name)"),
                ("region", _S, "shipping_region"),
                ("gmv", "money", "sum of total_amount of PAID events"),
                ("order_count", _L, "PAID events"),
            ),
        ),
        Table(
            "daily_conversion_funnel",
            "Users reaching each step: anywhere in the day, and strictly (each step "
            "after the previous one, in one session).",
            (
                ("date", _DATE, "UTC day"),
                ("step_order", _L, "1 product view, 2 add to cart, 3 checkout, 4 purchase"),
                ("step", _S, "product_view, add_to_cart, checkout_start, purchase"),
                ("users", _L, "distinct users with an event of the step that day"),
                ("step_conversion", _D, "users / users of the previous step (null for the first, or when it had none)"),
                ("overall_conversion", _D, "users / users of the first step"),
                ("strict_users", _L, "distinct users with a session where the steps so far happened in order"),
                ("strict_step_conversion", _D, "strict_users / strict_users of the previous step"),
                ("strict_overall_conversion", _D, "strict_users / users of the first step"),
            ),
        ),
        Table(
            "daily_order_status",
            "Orders created that day, by their status at the end of the day.",
            (
                ("date", _DATE, "UTC day of the CREATED event"),
                (
                    "status",
                    _S,
                    "the status of its latest event that day (same millisecond: the later OrderStatus symbol)",
                ),
                ("order_count", _L, "orders"),
                ("gmv", "money", "sum of total_amount of their latest events"),
                ("share", _D, "order_count / orders created that day"),
            ),
        ),
        Table(
            "batch_rejects",
            "Input rows the batch could not use, with the reason (its dead letters).",
            (
                ("date", _DATE, "UTC day of the row's event_time; the run's first date when it has none"),
                ("stream", _S, "clickstream or orders"),
                ("event_id", _S, "when the row has one"),
                ("reason", _S, "the first check it failed"),
                ("payload", _S, "the row as read (the JSON line, or the row as JSON)"),
                ("payload_encoding", _S, "utf8, or base64 when the line was not valid UTF-8"),
            ),
        ),
        Table(
            "daily_reconciliation",
            "Batch revenue against the streaming revenue_per_minute windows.",
            (
                ("date", _DATE, "UTC day"),
                ("batch_gmv", "money", "daily_revenue.gmv"),
                ("streaming_gmv", "money", "sum of revenue_per_minute.gmv of the day's windows"),
                ("difference", "money", "batch_gmv - streaming_gmv"),
                ("batch_orders", _L, "daily_revenue.order_count"),
                ("streaming_orders", _L, "sum of revenue_per_minute.order_count"),
                ("late_orders", _L, "order events the revenue job dead-lettered as late"),
                ("late_gmv", "money", "total_amount of the late PAID events"),
                ("dead_lettered_orders", _L, "other order messages dead-lettered (invalid, future, ...)"),
                ("unexplained", "money", "difference - late_gmv: 0 when the late events account for it"),
                ("status", _S, "MATCH, EXPLAINED (by late events) or MISMATCH"),
            ),
        ),
    )
}
