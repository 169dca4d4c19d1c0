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

With the product catalogue from CDC (``catalog``: the products change stream), revenue by
category takes each product's category from the database (catalog.py): in batch the latest
category per product is a side input; in streaming a stateful join keyed by product holds
each product's latest catalogue entry and labels the paid lines as they pass (a category
change applies to orders that arrive after it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Mapping

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from beam_pipelines.cdc.pipeline import CdcInput, ParseChanges, ReadChanges
from beam_pipelines.common.coders import LayoutCoder
from beam_pipelines.common.combine import AggregateFn, CombineBatchesPerKey
from beam_pipelines.common.lateness import LateGate
from beam_pipelines.common.windows import accumulating
from beam_pipelines.revenue.catalog import CatalogEntry, LatestEntryFn, catalog_entry, category_of
from beam_pipelines.revenue.metrics import WINDOW_MS, LineRevenue, MinuteRevenue, paid_lines, window_start_ms
from streamforge.cdc.tables import load_source_tables
from streamforge.timeutil import format_duration

__all__ = ["ProductCatalog", "RevenueWindows"]


class _MinuteRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("revenue", "emitted")

    def process(self, element: tuple[int, MinuteRevenue], pane=beam.DoFn.PaneInfoParam) -> Iterable[dict[str, Any]]:
        start_ms, revenue = element
        if revenue.has_row:
            self.rows.inc()
            yield revenue.record(start_ms, pane_index=pane.index)


class _LineRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("revenue", "emitted")

    def process(
        self, element: tuple[tuple[int, str, str], LineRevenue], pane=beam.DoFn.PaneInfoParam
    ) -> Iterable[dict[str, Any]]:
        (start_ms, region, category), revenue = element
        self.rows.inc()
        yield revenue.record(start_ms, region, category, pane_index=pane.index)


class _CountOrders(beam.DoFn):
    def setup(self) -> None:
        self.events = Metrics.counter("revenue", "events")

    def process(self, event: dict[str, Any]) -> Iterable[dict[str, Any]]:
        self.events.inc()
        yield event


def _by_minute(event: dict[str, Any]) -> tuple[tuple[int, dict[str, Any]]]:
    return ((window_start_ms(event), event),)


def _lines_by_minute_region_category(
    event: dict[str, Any], catalog: Mapping[str, str] | None = None
) -> Iterable[tuple[tuple[int, str, str], tuple[str, Any]]]:
    start_ms = window_start_ms(event)
    for (region, _category), order_id, item in paid_lines(event):
        yield (start_ms, region, category_of(item, catalog)), (order_id, item)


def _paid_lines_by_product(event: dict[str, Any]) -> Iterable[tuple[str, tuple[str, Any]]]:
    start_ms = window_start_ms(event)
    for (region, _category), order_id, item in paid_lines(event):
        yield item["product_id"], ("line", (start_ms, region, order_id, item))


def _latest_categories(entry: tuple[str, CatalogEntry | None]) -> Iterable[tuple[str, str]]:
    sku, latest = entry
    if latest is not None and latest.category is not None:
        yield sku, latest.category


class CatalogEntryCoder(LayoutCoder):
    """revenue with --catalog: a product's latest catalogue entry."""

    def fields(self, e: CatalogEntry) -> list[Any]:
        return [e.lsn, e.category]

    def build(self, version: int, f: list[Any]) -> CatalogEntry:
        return CatalogEntry(f[0], f[1])


class MinuteRevenueCoder(LayoutCoder):
    """revenue: the accumulator of a minute's revenue_per_minute row."""

    def fields(self, r: MinuteRevenue) -> list[Any]:
        return [r.gmv_cents, r.order_count, r.units, sorted(r.buyers), r.first_time_orders, r.cancelled_cents]

    def build(self, version: int, f: list[Any]) -> MinuteRevenue:
        return MinuteRevenue(f[0], f[1], f[2], set(f[3]), f[4], f[5])


class LineRevenueCoder(LayoutCoder):
    """revenue: the accumulator of a revenue_by_category_region row."""

    def fields(self, r: LineRevenue) -> list[Any]:
        return [r.gmv_cents, r.units, sorted(r.orders)]

    def build(self, version: int, f: list[Any]) -> LineRevenue:
        return LineRevenue(f[0], f[1], set(f[2]))


class _JoinCatalog(beam.DoFn):
    """Streaming: per product, the latest catalogue entry in state; each paid line takes its
    category from it (the event's own category until the catalogue has the product)."""

    LATEST = ReadModifyWriteStateSpec("latest", CatalogEntryCoder())

    def setup(self) -> None:
        self.hits, self.misses = (
            Metrics.counter("revenue", "catalog_hits"),
            Metrics.counter("revenue", "catalog_misses"),
        )

    def process(
        self, element: tuple[str, tuple[str, Any]], latest=beam.DoFn.StateParam(LATEST)
    ) -> Iterable[tuple[tuple[int, str, str], tuple[str, Any]]]:
        sku, (kind, value) = element
        held: CatalogEntry | None = latest.read()
        if kind == "catalog":
            entry = CatalogEntry(*value)
            if held is None or entry.lsn > held.lsn:
                latest.write(entry)
            return
        start_ms, region, order_id, item = value
        if held is not None and held.category is not None:
            self.hits.inc()
            category = held.category
        else:
            self.misses.inc()
            category = item["category"]
        yield (start_ms, region, category), (order_id, item)


class ProductCatalog(beam.PTransform):
    """The products change stream (``cdc run``'s output) -> ``((sku, CatalogEntry), dead_letters)``."""

    def __init__(self, source: CdcInput, local_feed: Any = None):
        super().__init__()
        self.source, self.local_feed = source, local_feed

    def expand(self, pbegin):
        products = {"products": load_source_tables()["products"]}
        reads = [
            pbegin
            | f"Read product changes {n}"
            >> ReadChanges(self.source.kind, location, self.local_feed, self.source.kafka_url(location))
            for n, (_, location) in enumerate(self.source.sources)
        ]
        payloads = reads | "All product changes" >> beam.Flatten() if len(reads) > 1 else reads[0]
        source = ", ".join(location for _, location in self.source.sources)
        changes, dead = payloads | "Parse product changes" >> ParseChanges(products, source)
        return changes | "Catalogue entries" >> beam.Map(catalog_entry), dead


class RevenueWindows(beam.PTransform):
    """Validated order events -> ``(per_minute_rows, by_category_region_rows, dead_letters)``.

    Streaming: timestamped events; batch: lists of events (see common/parse.py)."""

    def __init__(
        self,
        allowed_lateness: timedelta,
        *,
        streaming: bool,
        lateness_margin: timedelta = timedelta(0),
        catalog: beam.PCollection | None = None,
    ):
        super().__init__()
        self.allowed_lateness, self.streaming, self.margin = allowed_lateness, streaming, lateness_margin
        self.catalog = catalog  # (sku, CatalogEntry) from the products change stream, or None

    def display_data(self) -> dict[str, Any]:
        return {
            "allowed_lateness": format_duration(self.allowed_lateness),
            "lateness_margin": format_duration(self.margin),
            "catalog": self.catalog is not None,
        }

    def expand(self, orders: beam.PCollection):
        if not self.streaming:
            per_minute = orders | "Revenue per minute" >> CombineBatchesPerKey(
                _by_minute, AggregateFn(MinuteRevenue), counter=("revenue", "events")
            )
            categories = None
            if self.catalog is not None:
                categories = beam.pvalue.AsDict(
                    self.catalog
                    | "Latest catalogue entry per product" >> beam.CombinePerKey(LatestEntryFn())
                    | "Current categories" >> beam.FlatMap(_latest_categories)
                )
            by_category_region = orders | "Revenue by minute, region and category" >> CombineBatchesPerKey(
                _lines_by_minute_region_category, AggregateFn(LineRevenue), side_input=categories
            )
            return (
                per_minute | "Revenue per minute rows" >> beam.ParDo(_MinuteRow()),
                by_category_region | "Revenue by region and category rows" >> beam.ParDo(_LineRow()),
                [],
            )
        gated = orders | LateGate(
            "revenue",
            "order_event",
            lambda at_ms: at_ms - at_ms % WINDOW_MS + WINDOW_MS,
            self.allowed_lateness,
            self.margin,
        )
        counted = (
            gated.events
            | "Minute windows"
            >> accumulating(window.FixedWindows(WINDOW_MS / 1000), self.allowed_lateness + self.margin)
            | "Count order events" >> beam.ParDo(_CountOrders())
        )
        per_minute = (
            counted
            | "Key by minute" >> beam.FlatMap(_by_minute)
            | "Combine revenue per minute" >> beam.CombinePerKey(AggregateFn(MinuteRevenue, MinuteRevenueCoder()))
            | "Revenue per minute rows" >> beam.ParDo(_MinuteRow())
        )
        if self.catalog is None:
            lines = counted | "Paid lines by minute, region and category" >> beam.FlatMap(
                _lines_by_minute_region_category
            )
        else:  # join in the global window, then back into the minute windows
            paid = gated.events | "Paid lines by product" >> beam.FlatMap(_paid_lines_by_product)
            # plain tuples in the shuffle: no project class in a running job's data
            updates = self.catalog | "Catalogue updates by product" >> beam.Map(
                lambda kv: (kv[0], ("catalog", tuple(kv[1])))
            )
            lines = (
                (paid, updates)
                | "Lines and catalogue" >> beam.Flatten()
                | "Join the product catalogue" >> beam.ParDo(_JoinCatalog())
                | "Minute windows for lines"
                >> accumulating(window.FixedWindows(WINDOW_MS / 1000), self.allowed_lateness + self.margin)
            )
        by_category_region = (
            lines
            | "Combine revenue by region and category"
            >> beam.CombinePerKey(AggregateFn(LineRevenue, LineRevenueCoder()))
            | "Revenue by region and category rows" >> beam.ParDo(_LineRow())
        )
        return per_minute, by_category_region, [gated.dead_letter]
