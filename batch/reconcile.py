"""Batch revenue against the streaming revenue windows, to the cent, with what explains a gap.

For each date: ``batch_gmv`` (daily_revenue.gmv: every valid, deduplicated PAID event of the
day) against ``streaming_gmv`` (the sum of revenue_per_minute.gmv over the day's windows).
Both exclude invalid and duplicate messages; what the streaming job leaves out beyond that
are the events that arrived after their window closed, which its late-data gate writes to
dead_letter (pipeline revenue, reason late) with the event as payload. So:

    batch_gmv - streaming_gmv == late_gmv       (the total_amount of the late PAID events)

``status``: MATCH when the difference is zero, EXPLAINED when the late events account for
it, MISMATCH otherwise (``unexplained`` says by how much). The order messages the parse step
dead-lettered (invalid, future, ...) are counted beside it, by their event_time's day, or the
day they were received when they have none.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.frames import MONEY, conform
from batch.schemas import json_schema

__all__ = ["REVENUE_JOB", "reconcile"]

#: The dead_letter ``pipeline`` value of the revenue job's late-data gate.
REVENUE_JOB = "revenue"


def reconcile(
    daily_revenue: DataFrame, revenue_per_minute: DataFrame, dead_letter: DataFrame, dates: list[date]
) -> DataFrame:
    """One row per date. ``revenue_per_minute`` and ``dead_letter``: the warehouse tables' rows."""
    days = daily_revenue.sparkSession.createDataFrame([(d,) for d in dates], "date date")
    streaming = (
        revenue_per_minute.withColumn("date", F.to_date("window_start"))
        .groupBy("date")
        .agg(F.sum("gmv").alias("streaming_gmv"), F.sum("order_count").alias("streaming_orders"))
    )
    letters = dead_letter.withColumn("date", F.to_date(F.coalesce("event_time", "received_at")))
    late = (
        letters.where((F.col("pipeline") == REVENUE_JOB) & (F.col("reason") == "late"))
        .withColumn("event", F.from_json(_utf8_payload(), json_schema("orders")))
        .groupBy("date")
        .agg(
            F.count(F.lit(1)).alias("late_orders"),
            F.sum(F.when(F.col("event.status") == "PAID", F.col("event.total_amount").cast(MONEY))).alias("late_gmv"),
        )
    )
    other = (
        letters.where((F.col("step") == "Parse orders") & F.col("pipeline").isin(REVENUE_JOB, "all"))
        .groupBy("date")
        .agg(F.count(F.lit(1)).alias("dead_lettered_orders"))
    )
    batch = daily_revenue.select("date", F.col("gmv").alias("batch_gmv"), F.col("order_count").alias("batch_orders"))
    zero = F.lit(0).cast(MONEY)
    joined = (
        days.join(batch, "date", "left")
        .join(streaming, "date", "left")
        .join(late, "date", "left")
        .join(other, "date", "left")
        .select(
            "date",
            F.coalesce("batch_gmv", zero).alias("batch_gmv"),
            F.coalesce(F.col("streaming_gmv").cast(MONEY), zero).alias("streaming_gmv"),
            F.coalesce("batch_orders", F.lit(0)).alias("batch_orders"),
            F.coalesce("streaming_orders", F.lit(0)).alias("streaming_orders"),
            F.coalesce("late_orders", F.lit(0)).alias("late_orders"),
            F.coalesce("late_gmv", zero).alias("late_gmv"),
            F.coalesce("dead_lettered_orders", F.lit(0)).alias("dead_lettered_orders"),
        )
    )
    difference = F.col("batch_gmv") - F.col("streaming_gmv")
    result = (
        joined.withColumn("difference", difference)
        .withColumn("unexplained", difference - F.col("late_gmv"))
        .withColumn(
            "status",
            F.when(F.col("difference") == 0, "MATCH")
            .when(F.col("unexplained") == 0, "EXPLAINED")
            .otherwise("MISMATCH"),
        )
    )
    return conform(result, "daily_reconciliation")


def _utf8_payload():
    """The dead letter's original message as text (base64 payloads are decoded)."""
    return F.when(F.col("payload_encoding") == "base64", F.unbase64("payload").cast("string")).otherwise(
        F.col("payload")
    )
