"""The daily business metrics as functions of DataFrames (no reading, no writing).

Each takes the checked, deduplicated events of the requested dates (``orders``: order events,
``clicks``: clickstream events, typed as ``batch.schemas.typed_schema``) and returns the rows
of one table of ``batch.tables``. Money stays decimal from the input to the output; averages
are rounded half up to the cent, as the streaming revenue job rounds them.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batch.tables import MONEY, conform

__all__ = ["FUNNEL_STEPS", "conversion_funnel", "daily_revenue", "order_status", "revenue_by_category", "top_regions",
           "with_date"]

#: The funnel's steps: clickstream event types, in order.
FUNNEL_STEPS = ("product_view", "add_to_cart", "checkout_start", "purchase")


def with_date(events: DataFrame) -> DataFrame:
    """Adds ``date``, the UTC day of event_time (the session time zone is UTC)."""
    return events.withColumn("date", F.to_date("event_time"))


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
    per_category = lines.groupBy("date", "category").agg(
        F.sum("amount").alias("gmv"),
        F.countDistinct("order_id").alias("order_count"),
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


def conversion_funnel(clicks: DataFrame) -> DataFrame:
    """Four rows per date with clickstream events.

    Strict: per session, the first product view, then the first add to cart at or after it,
    the first checkout at or after that, the first purchase at or after that; a user reaches
    a step strictly when one of their sessions does.
    """
    first, *later = FUNNEL_STEPS
    at = F.col("event_time")
    per_session = clicks.groupBy("date", "user_id", "session_id").agg(
        F.min(F.when(F.col("event_type") == first, at)).alias(first),
        *[F.collect_list(F.when(F.col("event_type") == step, at)).alias(f"{step}_times") for step in later],
    )
    previous = first
    for step in later:  # the first time of the step at or after the previous step's time
        per_session = per_session.withColumn(step, F.array_min(F.filter(f"{step}_times", _at_or_after(previous))))
        previous = step
    strict = per_session.groupBy("date").agg(
        *[F.countDistinct(F.when(F.col(step).isNotNull(), F.col("user_id"))).alias(f"strict_{step}")
          for step in FUNNEL_STEPS])
    anywhere = clicks.groupBy("date").agg(
        *[F.countDistinct(F.when(F.col("event_type") == step, F.col("user_id"))).alias(step) for step in FUNNEL_STEPS])
    day = anywhere.join(strict, "date")
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
    """For the orders CREATED that day: each one's latest status that day (latest event_time, then
    event_id), with that event's total_amount."""
    created = orders.where(F.col("status") == "CREATED").select("date", "order_id").distinct()
    latest = (orders.join(created, ["date", "order_id"])
              .groupBy("date", "order_id")
              .agg(F.max_by(F.struct("status", "total_amount"), F.struct("event_time", "event_id")).alias("latest"))
              .select("date", "latest.status", "latest.total_amount"))
    counts = latest.groupBy("date", "status").agg(F.count(F.lit(1)).alias("order_count"),
                                                 F.sum("total_amount").alias("gmv"))
    day_total = F.sum("order_count").over(Window.partitionBy("date"))
    return conform(counts.withColumn("share", F.round(F.col("order_count") / day_total, 6)), "daily_order_status")
