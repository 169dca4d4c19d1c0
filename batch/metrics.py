"""The daily business metrics as functions of DataFrames (no reading, no writing).

Each takes the checked events of the requested dates, one per event_id (``deduplicated``;
``orders``: order events, ``clicks``: clickstream events, typed as
``batch.schemas.typed_schema``, with ``date``, the UTC day of event_time) and returns the rows
of one table of ``batch.tables``. Money stays decimal from the input to the output; averages
are rounded half up to the cent, as the streaming revenue job rounds them.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batch.schemas import fields
from batch.tables import MONEY, conform

__all__ = ["COLUMNS", "FUNNEL_STEPS", "PARTITION_KEYS", "conversion_funnel", "daily_revenue", "deduplicated",
           "has_duplicates", "order_status", "partitioned", "revenue_by_category", "session_funnel", "top_regions"]

#: The funnel's steps: clickstream event types, in order.
FUNNEL_STEPS = ("product_view", "add_to_cart", "checkout_start", "purchase")
#: How ``partitioned`` lays each stream out.
PARTITION_KEYS = {"orders": "order_id", "clickstream": "user_id"}
#: The columns the metrics read (besides ``date``): all the job keeps of each event.
COLUMNS = {
    "orders": ("event_id", "order_id", "user_id", "status", "items", "total_amount", "shipping_region", "event_time",
               "is_first_order"),
    "clickstream": ("event_id", "user_id", "session_id", "event_type", "event_time"),
}


def partitioned(rows: DataFrame, stream: str, partitions: int, keep: tuple[str, ...] = ()) -> DataFrame:
    """The metrics' columns (``COLUMNS[stream]``, ``date``, and ``keep``), hash-partitioned so that
    the metrics' first aggregations need no further shuffle: orders by order_id (an order's and
    a line's groups contain it), clicks by user_id (a session's and a user's groups contain it).
    Only PAID events keep their ``items``: no metric reads the others'."""
    key = PARTITION_KEYS[stream]
    columns = [F.when(F.col("status") == "PAID", F.col(c)).alias(c) if (stream, c) == ("orders", "items") else F.col(c)
               for c in COLUMNS[stream]]
    return (rows.select(*columns, *keep).withColumn("date", F.to_date("event_time"))
            .repartition(partitions, key))


def has_duplicates(events: DataFrame) -> bool:
    """Whether two rows share an event_id. A count per 64-bit hash of the id: plain hash
    aggregation over one fixed-width column, far cheaper than deduplicating wide rows; a
    collision only sends the job down the exact path."""
    return bool(events.groupBy(F.xxhash64("event_id").alias("h")).count().where("count > 1").limit(1).take(1))


def deduplicated(events: DataFrame, stream: str) -> DataFrame:
    """One row per event_id of ``partitioned`` events (within their partitions: no shuffle), with
    ``_copies``, how many rows had the id."""
    key = PARTITION_KEYS[stream]
    kept = [c for c in (*COLUMNS[stream], "date") if c not in ("event_id", key)]
    return (events.groupBy(key, "event_id")
            .agg(F.count(F.lit(1)).alias("_copies"), F.first(F.struct(*kept)).alias("_event"))
            .select("event_id", key, "_copies", "_event.*"))


def _units(items: str = "items"):
    return F.aggregate(items, F.lit(0).cast("long"), lambda total, item: total + item["quantity"])


def _ratio(numerator, denominator):
    return F.when(denominator > 0, F.round(numerator / denominator, 6))


def _per_unit(amount, count):
    return F.when(count > 0, F.round(amount.cast("decimal(38,6)") / count, 2)).otherwise(F.lit(0)).cast(MONEY)


def daily_revenue(orders: DataFrame) -> DataFrame:
    paid = F.col("status") == "PAID"
    totals = orders.groupBy("date").agg(
        F.coalesce(F.sum(F.when(paid, F.col("total_amount"))), F.lit(0)).alias("gmv"),
        F.count(F.when(paid, True)).alias("order_count"),
        F.coalesce(F.sum(F.when(paid, _units())), F.lit(0)).alias("units"),
        F.countDistinct(F.when(paid, F.col("user_id"))).alias("unique_customers"),
        F.count(F.when(paid & F.col("is_first_order"), True)).alias("first_time_orders"),
        F.coalesce(F.sum(F.when(F.col("status") == "CANCELLED", F.col("total_amount"))), F.lit(0)).alias("cancelled_gmv"),
    )
    return conform(totals.withColumn("avg_order_value", _per_unit(F.col("gmv"), F.col("order_count"))), "daily_revenue")


def revenue_by_category(orders: DataFrame) -> DataFrame:
    lines = (orders.where(F.col("status") == "PAID")
             .select("date", "order_id", "user_id", F.explode("items").alias("item"))
             .select("date", "order_id", "user_id", F.col("item.category").alias("category"),
                     F.col("item.quantity").alias("quantity"),
                     (F.col("item.unit_price") * F.col("item.quantity")).alias("amount")))
    # An order (and so its buyer) first, then the category: one distinct count per level, which
    # Spark plans without multiplying the rows as it does for two distinct counts in one step.
    per_order = lines.groupBy("date", "category", "order_id", "user_id").agg(
        F.sum("amount").alias("amount"), F.sum("quantity").alias("quantity"))
    per_category = per_order.groupBy("date", "category").agg(
        F.sum("amount").alias("gmv"),
        F.count(F.lit(1)).alias("order_count"),
        F.sum("quantity").alias("units"),
        F.countDistinct("user_id").alias("unique_customers"),
    )
    return conform(per_category
                   .withColumn("avg_order_value", _per_unit(F.col("gmv"), F.col("order_count")))
                   .withColumn("revenue_per_customer", _per_unit(F.col("gmv"), F.col("unique_customers"))),
                   "daily_revenue_by_category")


def top_regions(orders: DataFrame, top: int) -> DataFrame:
    regions = (orders.where(F.col("status") == "PAID")
               .groupBy("date", F.col("shipping_region").alias("region"))
               .agg(F.sum("total_amount").alias("gmv"), F.count(F.lit(1)).alias("order_count")))
    ranked = regions.withColumn("rank", F.row_number().over(
        Window.partitionBy("date").orderBy(F.col("gmv").desc(), F.col("region"))))
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
    steps = F.array(*[F.lit(s) for s in FUNNEL_STEPS])
    events = clicks.groupBy("date", "user_id", "session_id", "event_id").agg(
        F.count(F.lit(1)).alias("copies"),
        F.min(F.array_position(steps, F.col("event_type"))).alias("step"),  # 1-4, or 0: not a funnel step
        F.min(F.unix_millis("event_time")).alias("at"))
    first, *later = FUNNEL_STEPS
    number = {name: n for n, name in enumerate(FUNNEL_STEPS, start=1)}
    per_session = events.groupBy("date", "user_id", "session_id").agg(
        F.count(F.lit(1)).alias("events"), F.sum("copies").alias("copies"),
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
        *[F.max(F.col(step).isNotNull().cast("int")).alias(f"strict_{step}") for step in FUNNEL_STEPS])
    day = per_user.groupBy("date").agg(
        *[F.sum(f"any_{step}").alias(step) for step in FUNNEL_STEPS],
        *[F.sum(f"strict_{step}").alias(f"strict_{step}") for step in FUNNEL_STEPS])
    rows = []
    for order, step in enumerate(FUNNEL_STEPS, start=1):
        prior = FUNNEL_STEPS[order - 2] if order > 1 else None
        rows.append(F.struct(
            F.lit(order).alias("step_order"), F.lit(step).alias("step"), F.col(step).alias("users"),
            (_ratio(F.col(step), F.col(prior)) if prior else F.lit(None)).cast("double").alias("step_conversion"),
            _ratio(F.col(step), F.col(first)).alias("overall_conversion"),
            F.col(f"strict_{step}").alias("strict_users"),
            (_ratio(F.col(f"strict_{step}"), F.col(f"strict_{prior}")) if prior else F.lit(None)).cast("double")
            .alias("strict_step_conversion"),
            _ratio(F.col(f"strict_{step}"), F.col(first)).alias("strict_overall_conversion"),
        ))
    return conform(day.select("date", F.explode(F.array(*rows)).alias("row")).select("date", "row.*"),
                   "daily_conversion_funnel")


def order_status(orders: DataFrame) -> DataFrame:
    """For the orders CREATED that day: each one's status at the end of the day, from its latest
    event that day (the latest event_time; at the same millisecond, the later symbol of the
    schema's OrderStatus enum), with that event's total_amount."""
    symbols = F.array(*[F.lit(s) for s in order_status_symbols()])
    # (time, rank) packed in one long: max_by over fixed-width values aggregates by hashing.
    latest = F.unix_millis("event_time") * 16 + F.array_position(symbols, F.col("status"))
    per_order = (orders.groupBy("date", "order_id")
                 .agg(F.max(F.col("status") == "CREATED").alias("created"),
                      F.max_by(F.array_position(symbols, F.col("status")), latest).alias("rank"),
                      F.max_by((F.col("total_amount") * 100).cast("long"), latest).alias("cents"))
                 .where("created"))
    counts = per_order.groupBy("date", "rank").agg(F.count(F.lit(1)).alias("order_count"), F.sum("cents").alias("cents"))
    day_total = F.sum("order_count").over(Window.partitionBy("date"))
    return conform(counts.select("date", F.element_at(symbols, F.col("rank").cast("int")).alias("status"), "order_count",
                                 (F.col("cents").cast("decimal(38,0)") / 100).alias("gmv"),
                                 F.round(F.col("order_count") / day_total, 6).alias("share")), "daily_order_status")


def order_status_symbols() -> tuple[str, ...]:
    """OrderStatus's symbols in the order_event schema, in their declared order."""
    (status,) = [f for f in fields("orders") if f.name == "status"]
    return tuple(status.avro["symbols"])
