"""The revenue job: order events -> one-minute tumbling event-time windows -> two tables.

Streaming (Pub/Sub):

    orders -> Dead-letter late events -> Minute windows
           -> Key by minute -> Combine revenue per minute -> rows
           -> Paid lines by minute, region and category -> Combine revenue by region and category -> rows

Batch (files):

    order batches -> Revenue per minute (combine each batch, merge per minute) -> rows
                  -> Revenue by minute, region and category (the same) -> rows

Both aggregations are CombineFns over the mergeable aggregates of revenue/metrics.py, so
Beam combines partial results per bundle and per key in parallel and merges them; nothing
waits for a single global window (the old RevenueCalculator's bottleneck). In streaming, late
order events within the allowed lateness re-fire the minute with everything so far (one-minute
windows keyed by their minute). On a bounded input every minute is complete when the input
ends, so the batch form only keys by the minute: the same rows, without the local runner's
per-window trigger machinery (about 0.5 ms per order there; docs/pipelines.md, "Performance"),
and combining whole batches of events at a time (common/combine.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from beam_pipelines.common.combine import AggregateFn, CombineBatchesPerKey
from beam_pipelines.common.lateness import LateGate
from beam_pipelines.common.windows import accumulating
from beam_pipelines.revenue.metrics import WINDOW_MS, LineRevenue, MinuteRevenue, paid_lines, window_start_ms

__all__ = ["RevenueWindows"]


class _MinuteRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("revenue", "emitted")

    def process(self, element: tuple[int, MinuteRevenue]) -> Iterable[dict[str, Any]]:
        start_ms, revenue = element
        if revenue.order_count or revenue.cancelled_gmv:  # a minute of only CREATED/SHIPPED events has no row
            self.rows.inc()
            yield revenue.record(start_ms)


class _LineRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("revenue", "emitted")

    def process(self, element: tuple[tuple[int, str, str], LineRevenue]) -> Iterable[dict[str, Any]]:
        (start_ms, region, category), revenue = element
        self.rows.inc()
        yield revenue.record(start_ms, region, category)


class _CountOrders(beam.DoFn):
    def setup(self) -> None:
        self.events = Metrics.counter("revenue", "events")

    def process(self, event: dict[str, Any]) -> Iterable[dict[str, Any]]:
        self.events.inc()
        yield event


def _by_minute(event: dict[str, Any]) -> tuple[tuple[int, dict[str, Any]]]:
    return ((window_start_ms(event), event),)


def _lines_by_minute_region_category(event: dict[str, Any]) -> Iterable[tuple[tuple[int, str, str], tuple[str, Any]]]:
    start_ms = window_start_ms(event)
    for (region, category), order_id, item in paid_lines(event):
        yield (start_ms, region, category), (order_id, item)


class RevenueWindows(beam.PTransform):
    """Validated order events -> ``(per_minute_rows, by_category_region_rows, dead_letters)``.

    Streaming: timestamped events; batch: lists of events (see common/parse.py)."""

    def __init__(self, allowed_lateness: timedelta, *, streaming: bool, lateness_margin: timedelta = timedelta(0)):
        super().__init__()
        self.allowed_lateness, self.streaming, self.margin = allowed_lateness, streaming, lateness_margin

    def expand(self, orders: beam.PCollection):
        if not self.streaming:
            per_minute = orders | "Revenue per minute" >> CombineBatchesPerKey(
                _by_minute, AggregateFn(MinuteRevenue), counter=("revenue", "events"))
            by_category_region = orders | "Revenue by minute, region and category" >> CombineBatchesPerKey(
                _lines_by_minute_region_category, AggregateFn(LineRevenue))
            return (per_minute | "Revenue per minute rows" >> beam.ParDo(_MinuteRow()),
                    by_category_region | "Revenue by region and category rows" >> beam.ParDo(_LineRow()), [])
        gated = orders | LateGate("revenue", "order_event", lambda at_ms: at_ms - at_ms % WINDOW_MS + WINDOW_MS,
                                  self.allowed_lateness, self.margin)
        counted = (
            gated.events
            | "Minute windows" >> accumulating(window.FixedWindows(WINDOW_MS / 1000), self.allowed_lateness + self.margin)
            | "Count order events" >> beam.ParDo(_CountOrders())
        )
        per_minute = (
            counted
            | "Key by minute" >> beam.FlatMap(_by_minute)
            | "Combine revenue per minute" >> beam.CombinePerKey(AggregateFn(MinuteRevenue))
            | "Revenue per minute rows" >> beam.ParDo(_MinuteRow())
        )
        by_category_region = (
            counted
            | "Paid lines by minute, region and category" >> beam.FlatMap(_lines_by_minute_region_category)
            | "Combine revenue by region and category" >> beam.CombinePerKey(AggregateFn(LineRevenue))
            | "Revenue by region and category rows" >> beam.ParDo(_LineRow())
        )
        return per_minute, by_category_region, [gated.dead_letter]
