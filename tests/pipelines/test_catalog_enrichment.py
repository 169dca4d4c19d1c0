"""Revenue by category from the CDC product catalogue (--catalog): batch side input, streaming join."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.revenue.catalog import CatalogEntry
from beam_pipelines.revenue.pipeline import _JoinCatalog
from tests.support.changes import envelope, product
from tests.support.cli import run_cli
from tests.support.reference import load, revenue_by_category_region


def _sold_products(run: Path) -> list[str]:
    con = load(run)
    return [
        r[0]
        for r in con.execute(
            "SELECT i.product_id FROM orders o JOIN order_items i USING (event_id) WHERE o.status = 'PAID' "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 2"
        ).fetchall()
    ]


def test_batch_revenue_by_category_uses_the_latest_category_in_the_database(default_run: Path, tmp_path: Path) -> None:
    moved, deleted = _sold_products(default_run)
    changes = tmp_path / "cdc"
    changes.mkdir()
    lines = [
        envelope(
            "products",
            "u",
            product(id=1, sku=moved, category="garden_y"),
            product(id=1, sku=moved, category="garden_z"),
            30,
        ),  # the latest, though written first
        envelope("products", "r", None, product(id=1, sku=moved, category="garden_x"), 10, snapshot="true"),
        envelope(
            "products",
            "u",
            product(id=1, sku=moved, category="garden_x"),
            product(id=1, sku=moved, category="garden_y"),
            20,
        ),
        envelope("products", "r", None, product(id=2, sku=deleted, category="gone"), 10, snapshot="true"),
        envelope("products", "d", product(id=2, sku=deleted, category="gone"), None, 40),
        b"null",
        b"{broken",
    ]
    (changes / "cdc.public.products.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    warehouse = tmp_path / "w.duckdb"
    result = run_cli(
        "run",
        "revenue",
        "--input",
        f"file://{default_run / 'orders.jsonl'}",
        "--catalog",
        f"file://{changes}",
        "--warehouse",
        f"duckdb://{warehouse}",
        "--quiet",
    )
    assert result.exit_code == 0, result.output

    con = load(default_run)  # the independent computation: SQL with the catalogue's answer written out
    con.execute("UPDATE order_items SET category = 'garden_z' WHERE product_id = ?", [moved])
    expected = con.execute(
        f"SELECT window_start, region, category, gmv, units, order_count "
        f"FROM ({revenue_by_category_region(con).sql_query()}) ORDER BY ALL"
    ).fetchall()
    with duckdb.connect(str(warehouse), read_only=True) as wh:
        actual = wh.execute(
            "SELECT window_start, region, category, gmv, units, order_count "
            "FROM revenue_by_category_region ORDER BY ALL"
        ).fetchall()
        assert actual == expected
        categories = {r[0] for r in wh.execute("SELECT DISTINCT category FROM revenue_by_category_region").fetchall()}
        assert "garden_z" in categories and not categories & {"garden_x", "garden_y", "gone"}
        assert wh.execute("SELECT reason, pipeline FROM dead_letter").fetchall() == [("invalid_json", "cdc")]


_joined: list[Any] = []


class _Keep(beam.DoFn):
    def process(self, element: Any) -> None:
        _joined.append(element)


def test_streaming_join_labels_lines_with_the_category_known_when_they_pass() -> None:
    """A line takes the product's latest catalogue category at the time it is joined; before
    the catalogue knows the product, the event's own category."""

    def line(sku: str, own: str, at: int) -> TimestampedValue:
        return TimestampedValue(
            (sku, ("line", (at * 1000, "EU", f"o-{at}", {"product_id": sku, "category": own, "quantity": 1}))), at
        )

    def entry(sku: str, lsn: int, category: str | None) -> TimestampedValue:
        return TimestampedValue((sku, ("catalog", CatalogEntry(lsn, category))), 0)

    stream = (
        BeamTestStream()
        .add_elements([entry("A", 10, "lamps")])
        .advance_watermark_to(1)
        .add_elements([line("A", "home", 2), line("B", "toys", 3)])
        .advance_watermark_to(4)
        .add_elements([entry("A", 20, "lighting"), entry("A", 15, "stale")])
        .advance_watermark_to(5)
        .add_elements([line("A", "home", 6)])
        .advance_watermark_to(7)
        .add_elements([entry("A", 30, None)])
        .advance_watermark_to(8)
        .add_elements([line("A", "home", 9)])
        .advance_watermark_to_infinity()
    )
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    _joined.clear()
    with beam.Pipeline(runner="DirectRunner", options=options) as pipeline:
        pipeline | stream | beam.ParDo(_JoinCatalog()) | beam.ParDo(_Keep())
    assert sorted((order_id, category) for (_start, _region, category), (order_id, _item) in _joined) == [
        ("o-2", "lamps"),
        ("o-3", "toys"),
        ("o-6", "lighting"),
        ("o-9", "home"),
    ]


def test_catalog_only_for_revenue(default_run: Path, tmp_path: Path) -> None:
    (tmp_path / "cdc.public.products.jsonl").write_bytes(envelope("products", "r", None, product(), 1) + b"\n")
    result = run_cli(
        "run", "fraud", "--input", f"file://{default_run / 'orders.jsonl'}", "--catalog", f"file://{tmp_path}"
    )
    assert result.exit_code == 2
    assert "--catalog is for the revenue job (and all), not fraud" in result.output
