"""The daily business metrics as functions of DataFrames (no reading, no writing).

Each takes the checked events of the requested dates as ``partitioned`` lays them out, one
per event_id (``deduplicated``; ``orders``: order events, ``clicks``: clickstream events,
with ``date``, the UTC day of event_time), or a summary of them (``order_totals``,
``line_totals``, ``session_funnel``), and returns the rows of one table of ``streamforge.schemas.daily_tables``.
Money stays decimal from the input to the output; averages are rounded half up to the cent,
as the streaming revenue job rounds them.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batch.frames import MONEY, conform
from batch.schemas import fields

__all__ = [
    "COLUMNS",
    "FUNNEL_STEPS",
    "PARTITION_KEYS",
    "conversion_funnel",
    "daily_revenue",
    "deduplicated",
    "has_duplicates",
    "line_totals",
    "order_status",
    "order_totals",
    "partitioned",
    "revenue_by_category",
    "session_funnel",
    "top_regions",
]

#: The funnel's steps: clickstream event types, in order.
FUNNEL_STEPS = ("product_view", "add_to_cart", "checkout_start", "purchase")
#: How ``partitioned`` lays each stream out.
PARTITION_KEYS = {"orders": "order_id", "clickstream": "user_id"}
#: The columns the metrics read (besides ``date``): all the job keeps of each event.
COLUMNS = {
    "orders": (
        "event_id",
        "order_id",
        "user_id",
        "status",
        "items",
        "total_amount",
        "shipping_region",
        "event_time",
        "is_first_order",
    ),
    "clickstream": ("event_id", "user_id", "session_id", "step", "at"),
}
#: The kept columns that are not the event's own, as expressions over its columns. Only PAID
#: events keep their items (no metric reads the others'); a click keeps its funnel step's
#: number (1-4, or 0 for other event types) and its time in epoch milliseconds, fixed-width
#: values, so that shuffling and aggregating millions of clicks moves and hashes fewer bytes.
_DERIVED = {
    ("orders", "items"): lambda: F.when(F.col("status") == "PAID", F.col("items")),
    ("clickstream", "step"): lambda: F.array_position(
        F.array(*[F.lit(s) for s in FUNNEL_STEPS]), F.col("event_type")
    ).cast("byte"),
    ("clickstream", "at"): lambda: F.unix_millis("event_time"),
}


def utc_date(column: str):
    """The UTC day of a timestamp column: to_date() in a UTC session, by arithmetic (Spark's cast
    goes through java.time per row)."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(column) / 86_400).cast("int"))


def partitioned(rows: DataFrame, stream: str, partitions: int, keep: tuple[str, ...] = ()) -> DataFrame:
    """The metrics' columns (``COLUMNS[stream]``, ``date``, and ``keep``), hash-partitioned so that
    the metrics' first aggregations need no further shuffle: orders by order_id (an order's and
    a line's groups contain it), clicks by user_id (a session's and a user's groups contain it)."""
    columns = [_DERIVED[stream, c]().alias(c) if (stream, c) in _DERIVED else F.col(c) for c in COLUMNS[stream]]
    return rows.select(*columns, *keep, utc_date("event_time").alias("date")).repartition(
        partitions, PARTITION_KEYS[stream]
    )


def has_duplicates(events: DataFrame, stream: str) -> bool:
    """Whether two of the ``partitioned`` rows would be one for ``deduplicated`` (same key and
    event_id). A count per (key, 64-bit hash of the id) within the partitions, which already
    hold each key's rows: no shuffle, and far cheaper than deduplicating wide rows; a collision
    only sends the job down the exact path."""
    key = PARTITION_KEYS[stream]
    counted = events.groupBy(key, F.xxhash64("event_id").alias("h")).count()
    return bool(counted.where("count > 1").limit(1).take(1))


def deduplicated(events: DataFrame, stream: str) -> DataFrame:
    """One row per event_id of ``partitioned`` events (within their partitions: no shuffle), with
    ``_copies``, how many rows had the id."""
    key = PARTITION_KEYS[stream]
    kept = [c for c in (*COLUMNS[stream], "date") if c not in ("event_id", key)]
    return (
        events.groupBy(key, "event_id")
        .agg(F.count(F.lit(1)).alias("_copies"), F.first(F.struct(*kept)).alias("_event"))
        .select("event_id", key, "_copies", "_event.*")
    )


def _ratio(numerator, denominator):
    return F.when(denominator > 0, F.round(numerator / denominator, 6))


def _per_unit(amount, count):
    return F.when(count > 0, F.round(amount.cast("decimal(38,6)") / count, 2)).otherwise(F.lit(0)).cast(MONEY)


def order_totals(orders: DataFrame) -> DataFrame:
    """Per (date, status, shipping_region) of the order events: ``amount`` (their total_amount),
    ``events``, ``first_orders`` (with is_first_order) and ``copies`` (rows before deduplication).
    A few dozen rows a day, from which daily_revenue's sums, the top regions and the job's
    counts are read."""
    return orders.groupBy("date", "status", "shipping_region").agg(
        F.sum("total_amount").alias("amount"),
        F.count(F.lit(1)).alias("events"),
        F.count(F.when(F.col("is_first_order"), True)).alias("first_orders"),
        F.sum("_copies").alias("copies"),
    )


def line_totals(orders: DataFrame) -> DataFrame:
    """The PAID events' item lines, per (date, category) and, where ``category`` is null, per
    date: ``gmv`` (quantity * unit_price), ``units``, ``order_count`` (orders with a line in the
    category; not meaningful per date) and ``unique_customers``.

    An order's lines are summed within the partitions (orders are partitioned by order_id),
    then per buyer and category and per buyer in one aggregation (two grouping sets), so that
    both distinct counts come from counting rows. Every valid order event has a line
    (minItems 1), so the buyers per date are the buyers of PAID events."""
    lines = (
        orders.where(F.col("status") == "PAID")
        .select("date", "order_id", "user_id", F.explode("items").alias("item"))
        .select(
            "date",
            "order_id",
            "user_id",
            F.col("item.category").alias("category"),
            F.col("item.quantity").alias("quantity"),
            (F.col("item.unit_price") * F.col("item.quantity")).alias("amount"),
        )
    )
    per_order = lines.groupBy("date", "category", "order_id", "user_id").agg(
        F.sum("amount").alias("amount"), F.sum("quantity").alias("quantity")
    )
    per_buyer = per_order.groupingSets(
        [["date", "user_id", "category"], ["date", "user_id"]], "date", "user_id", "category"
    ).agg(
        F.sum("amount").alias("amount"),
        F.sum("quantity").alias("quantity"),
        F.count(F.lit(1)).alias("orders"),
        F.grouping("category").alias("per_date"),
    )
    return per_buyer.groupBy("date", "per_date", "category").agg(
        F.sum("amount").alias("gmv"),
        F.sum("quantity").alias("units"),
        F.sum("orders").alias("order_count"),
        F.count(F.lit(1)).alias("unique_customers"),
    )


def _status_sum(status: str, column: str):
    return F.coalesce(F.sum(F.when(F.col("status") == status, F.col(column))), F.lit(0))


def daily_revenue(totals: DataFrame, lines: DataFrame) -> DataFrame:
    """From ``order_totals`` and ``line_totals``: one row per date with order events."""
    day = totals.groupBy("date").agg(
        _status_sum("PAID", "amount").alias("gmv"),
        _status_sum("PAID", "events").alias("order_count"),
        _status_sum("PAID", "first_orders").alias("first_time_orders"),
        _status_sum("CANCELLED", "amount").alias("cancelled_gmv"),
    )
    buyers = lines.where(F.col("per_date") == 1).select("date", "units", "unique_customers")
    revenue = (
        day.join(buyers, "date", "left")
        .fillna(0, subset=["units", "unique_customers"])
        .withColumn("avg_order_value", _per_unit(F.col("gmv"), F.col("order_count")))
    )
    return conform(revenue, "daily_revenue")


def revenue_by_category(lines: DataFrame) -> DataFrame:
    """From ``line_totals``."""
    per_category = lines.where(F.col("per_date") == 0)
    return conform(
        per_category.withColumn("avg_order_value", _per_unit(F.col("gmv"), F.col("order_count"))).withColumn(
            "revenue_per_customer", _per_unit(F.col("gmv"), F.col("unique_customers"))
        ),
        "daily_revenue_by_category",
    )


def top_regions(totals: DataFrame, top: int) -> DataFrame:
    """From ``order_totals``: the ``top`` shipping regions of each date by PAID gmv."""
    regions = (
        totals.where(F.col("status") == "PAID")
        .groupBy("date", F.col("shipping_region").alias("region"))
        .agg(F.sum("amount").alias("gmv"), F.sum("events").alias("order_count"))
    )
    ranked = regions.withColumn(
        "rank", F.row_number().over(Window.partitionBy("date").orderBy(F.col("gmv").desc(), F.col("region")))
    )
    return conform(ranked.where(F.col("rank") <= top), "daily_top_regions")


def _at_or_after(column: str):
    """filter()'s lambda: times at or after ``column`` (a factory: PySpark reads a lambda's arity)."""
    return lambda t: t >= F.col(column)


def session_funnel(clicks: DataFrame) -> DataFrame:
    """One row per (date, user, session) of ``partitioned`` clicks (duplicates welcome): which steps
    it has anywhere, and its strict chain, the first product view, then the first add to cart
    at or after it, the first checkout at or after that, the first purchase at or after that
    (as epoch milliseconds). ``events`` counts its distinct event_ids, ``copies`` its rows.

    Each event_id is taken once on the way, in an aggregation over fixed-width values (a step
    number, milliseconds) that Spark does by hashing within the partitions. (Two different
    events sharing an id count as one, with the earlier step and time.)"""
    events = clicks.groupBy("date", "user_id", "session_id", "event_id").agg(
        F.count(F.lit(1)).alias("copies"), F.min("step").alias("step"), F.min("at").alias("at")
    )
    first, *later = FUNNEL_STEPS
    number = {name: n for n, name in enumerate(FUNNEL_STEPS, start=1)}
    per_session = events.groupBy("date", "user_id", "session_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.sum("copies").alias("copies"),
        *[F.max(F.col("step") == number[step]).alias(f"any_{step}") for step in FUNNEL_STEPS],
        F.min(F.when(F.col("step") == 1, F.col("at"))).alias(first),
        *[F.collect_list(F.when(F.col("step") == number[step], F.col("at"))).alias(f"{step}_times") for step in later],
    )
    previous = first
    for step in later:  # the first time of the step at or after the previous step's time
        per_session = per_session.withColumn(step, F.array_min(F.filter(f"{step}_times", _at_or_after(previous))))
        previous = step
    return per_session.drop(*[f"{step}_times" for step in later])


def conversion_funnel(sessions: DataFrame) -> DataFrame:
    """Four rows per date with clickstream events, from ``session_funnel``'s rows: a user reaches a
    step when any of their sessions has it, and strictly when one of their sessions has the
    chain up to it."""
    first = FUNNEL_STEPS[0]
    # Users once per day (a max over their sessions), then summed: no distinct counts needed.
    per_user = sessions.groupBy("date", "user_id").agg(
        *[F.max(F.col(f"any_{step}").cast("int")).alias(f"any_{step}") for step in FUNNEL_STEPS],
        *[F.max(F.col(step).isNotNull().cast("int")).alias(f"strict_{step}") for step in FUNNEL_STEPS],
    )
    day = per_user.groupBy("date").agg(
        *[F.sum(f"any_{step}").alias(step) for step in FUNNEL_STEPS],
        *[F.sum(f"strict_{step}").alias(f"strict_{step}") for step in FUNNEL_STEPS],
    )
    rows = []
    for order, step in enumerate(FUNNEL_STEPS, start=1):
        prior = FUNNEL_STEPS[order - 2] if order > 1 else None
        rows.append(
            F.struct(
                F.lit(order).alias("step_order"),
                F.lit(step).alias("step"),
                F.col(step).alias("users"),
                (_ratio(F.col(step), F.col(prior)) if prior else F.lit(None)).cast("double").alias("step_conversion"),
                _ratio(F.col(step), F.col(first)).alias("overall_conversion"),
                F.col(f"strict_{step}").alias("strict_users"),
                (_ratio(F.col(f"strict_{step}"), F.col(f"strict_{prior}")) if prior else F.lit(None))
                .cast("double")
                .alias("strict_step_conversion"),
                _ratio(F.col(f"strict_{step}"), F.col(first)).alias("strict_overall_conversion"),
            )
        )
    return conform(
        day.select("date", F.explode(F.array(*rows)).alias("row")).select("date", "row.*"), "daily_conversion_funnel"
    )


def order_status(orders: DataFrame) -> DataFrame:
    """For the orders CREATED that day: each one's status at the end of the day, from its latest
    event that day (the latest event_time; at the same millisecond, the later symbol of the
    schema's OrderStatus enum), with that event's total_amount."""
    symbols = F.array(*[F.lit(s) for s in order_status_symbols()])
    # (time, rank) packed in one long: max_by over fixed-width values aggregates by hashing.
    latest = F.unix_millis("event_time") * 16 + F.array_position(symbols, F.col("status"))
    per_order = (
        orders.groupBy("date", "order_id")
        .agg(
            F.max(F.col("status") == "CREATED").alias("created"),
            F.max_by(F.array_position(symbols, F.col("status")), latest).alias("rank"),
            F.max_by((F.col("total_amount") * 100).cast("long"), latest).alias("cents"),
        )
        .where("created")
    )
    counts = per_order.groupBy("date", "rank").agg(
        F.count(F.lit(1)).alias("order_count"), F.sum("cents").alias("cents")
    )
    day_total = F.sum("order_count").over(Window.partitionBy("date"))
    return conform(
        counts.select(
            "date",
            F.element_at(symbols, F.col("rank").cast("int")).alias("status"),
            "order_count",
            (F.col("cents").cast("decimal(38,0)") / 100).alias("gmv"),
            F.round(F.col("order_count") / day_total, 6).alias("share"),
        ),
        "daily_order_status",
    )


def order_status_symbols() -> tuple[str, ...]:
    """OrderStatus's symbols in the order_event schema, in their declared order."""
    (status,) = [f for f in fields("orders") if f.name == "status"]
    return tuple(status.avro["symbols"])
