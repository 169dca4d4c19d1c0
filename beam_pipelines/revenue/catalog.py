"""The product catalogue kept from CDC: the category each product (sku) is in now. Plain Python.

Order events carry each item's category as the shop's front end saw it. When the revenue job
is given the ``products`` change stream (``--catalog``), revenue by category uses the
database's category instead, so moving a product to another category in PostgreSQL shows up
in ``revenue_by_category_region``. The latest change by LSN wins; a deleted product falls
back to the event's own category.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple

import apache_beam as beam

from beam_pipelines.cdc.envelope import Change

__all__ = ["CatalogEntry", "LatestEntryFn", "catalog_entry", "category_of"]


class CatalogEntry(NamedTuple):
    lsn: int
    category: str | None  # None: the product was deleted


def catalog_entry(change: Change) -> tuple[str, CatalogEntry]:
    """(sku, entry) of a products change."""
    return change.row["sku"], CatalogEntry(change.lsn, None if change.deleted else change.row["category"])


def newer(a: CatalogEntry | None, b: CatalogEntry | None) -> CatalogEntry | None:
    if a is None:
        return b
    return a if b is None or a.lsn >= b.lsn else b


def category_of(item: Mapping[str, Any], catalog: Mapping[str, str] | None) -> str:
    """The item's category: the catalogue's when it knows the product, else the event's."""
    if catalog:
        category = catalog.get(item["product_id"])
        if category is not None:
            return category
    return item["category"]


class LatestEntryFn(beam.CombineFn):
    """The entry with the highest LSN."""

    def create_accumulator(self) -> CatalogEntry | None:
        return None

    def add_input(self, accumulator: CatalogEntry | None, entry: CatalogEntry) -> CatalogEntry | None:
        return newer(accumulator, entry)

    def merge_accumulators(self, accumulators: Iterable[CatalogEntry | None]) -> CatalogEntry | None:
        latest = None
        for accumulator in accumulators:
            latest = newer(latest, accumulator)
        return latest

    def extract_output(self, accumulator: CatalogEntry | None) -> CatalogEntry | None:
        return accumulator
