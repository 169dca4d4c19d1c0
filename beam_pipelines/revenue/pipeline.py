"""The revenue job: order events -> one-minute tumbling event-time windows -> two tables.

    orders -> [Dead-letter late events] -> Minute windows -> Revenue per minute
                                                          -> Paid lines by region and category
                                                             -> Revenue by region and category

Both aggregations are CombineFns over the mergeable aggregates of revenue/metrics.py, so
Beam combines partial results per bundle and per key in parallel and merges them; nothing
waits for a single global window (the old RevenueCalculator's bottleneck). Late order
events within the allowed lateness re-fire the minute with everything so far.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from beam_pipelines.common.lateness import LateGate
from beam_pipelines.common.windows import accumulating
from beam_pipelines.revenue.metrics import WINDOW_MS, LineRevenue, MinuteRevenue, paid_lines

__all__ = ["LineRevenueFn", "MinuteRevenueFn", "RevenueWindows"]


class MinuteRevenueFn(beam.CombineFn):
    def create_accumulator(self) -> MinuteRevenue:
        return MinuteRevenue()

    def add_input(self, accumulator: MinuteRevenue, event: dict[str, Any]) -> MinuteRevenue:
        return accumulator.add(event)

    def merge_accumulators(self, accumulators: Iterable[MinuteRevenue]) -> MinuteRevenue:
        merged = MinuteRevenue()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: MinuteRevenue) -> MinuteRevenue:
        return accumulator


class LineRevenueFn(beam.CombineFn):
    def create_accumulator(self) -> LineRevenue:
        return LineRevenue()

    def add_input(self, accumulator: LineRevenue, line: tuple[str, dict[str, Any]]) -> LineRevenue:
        return accumulator.add(*line)

    def merge_accumulators(self, accumulators: Iterable[LineRevenue]) -> LineRevenue:
        merged = LineRevenue()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: LineRevenue) -> LineRevenue:
        return accumulator


def _start_ms(window_param: window.IntervalWindow) -> int:
    return window_param.start.micros // 1000


class _MinuteRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("revenue", "emitted")

    def process(self, revenue: MinuteRevenue, w=beam.DoFn.WindowParam) -> Iterable[dict[str, Any]]:
        if revenue.order_count or revenue.cancelled_gmv:  # a minute of only CREATED/SHIPPED events has no row
            self.rows.inc()
            yield revenue.record(_start_ms(w))


class _LineRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("revenue", "emitted")

    def process(self, element: tuple[tuple[str, str], LineRevenue], w=beam.DoFn.WindowParam) -> Iterable[dict[str, Any]]:
        (region, category), revenue = element
        self.rows.inc()
        yield revenue.record(_start_ms(w), region, category)


class _CountOrders(beam.DoFn):
    def setup(self) -> None:
        self.events = Metrics.counter("revenue", "events")

    def process(self, event: dict[str, Any]) -> Iterable[dict[str, Any]]:
        self.events.inc()
        yield event


class RevenueWindows(beam.PTransform):
    """Validated order events (timestamped) -> ``(per_minute_rows, by_category_region_rows, dead_letters)``."""

    def __init__(self, allowed_lateness: timedelta, *, streaming: bool, lateness_margin: timedelta = timedelta(0)):
        super().__init__()
        self.allowed_lateness, self.streaming, self.margin = allowed_lateness, streaming, lateness_margin

    def expand(self, orders: beam.PCollection):
        dead_letters = []
        window_lateness = self.allowed_lateness
        if self.streaming:
            gated = orders | LateGate("revenue", "order_event", lambda at_ms: at_ms - at_ms % WINDOW_MS + WINDOW_MS,
                                      self.allowed_lateness, self.margin)
            orders, dead_letters = gated.events, [gated.dead_letter]
            window_lateness += self.margin
        windowed = (
            orders
            | "Count order events" >> beam.ParDo(_CountOrders())
            | "Minute windows" >> accumulating(window.FixedWindows(WINDOW_MS / 1000), window_lateness)
        )
        per_minute = (
            windowed
            | "Combine revenue per minute" >> beam.CombineGlobally(MinuteRevenueFn()).without_defaults()
            | "Revenue per minute rows" >> beam.ParDo(_MinuteRow())
        )
        by_category_region = (
            windowed
            | "Paid lines by region and category" >> beam.FlatMap(
                lambda event: ((key, (order_id, item)) for key, order_id, item in paid_lines(event)))
            | "Combine revenue by region and category" >> beam.CombinePerKey(LineRevenueFn())
            | "Revenue by region and category rows" >> beam.ParDo(_LineRow())
        )
        return per_minute, by_category_region, dead_letters
