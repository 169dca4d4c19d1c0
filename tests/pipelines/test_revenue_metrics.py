"""Revenue aggregates, without Beam: compared with SQL over the default run, built from
partial aggregates merged in random order."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, TypeVar

import orjson

from beam_pipelines.revenue.metrics import LineRevenue, MinuteRevenue, paid_lines, window_start_ms
from streamforge.schemas import get_schema
from streamforge.timeutil import to_millis
from tests.support.reference import load, revenue_by_category_region, revenue_per_minute
from tests.support.samples import sample

A = TypeVar("A", MinuteRevenue, LineRevenue)


def _order_events(directory: Path) -> list[dict[str, Any]]:
    schema = get_schema("order_event")
    return [schema.validate(orjson.loads(line)) for line in (directory / "orders.jsonl").read_bytes().splitlines()]


def _combine(items: list[Any], make: Callable[[], A], add: Callable[[A, Any], None], rng: random.Random) -> A:
    """Partial aggregates over a shuffled split of ``items``, merged in random order."""
    rng.shuffle(items)
    parts = [make() for _ in range(rng.randint(1, 3))]
    for item in items:
        add(parts[rng.randrange(len(parts))], item)
    rng.shuffle(parts)
    total = make()
    for part in parts:
        total.merge(part)
    return total


def test_revenue_per_minute_matches_sql(default_run: Path) -> None:
    windows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in _order_events(default_run):
        if event["status"] in ("PAID", "CANCELLED"):
            windows[window_start_ms(event)].append(event)
    rng = random.Random(3)
    got = {
        start: _combine(events, MinuteRevenue, MinuteRevenue.add, rng).record(start)
        for start, events in windows.items()
    }
    want = {
        to_millis(row["window_start"]): row
        for row in revenue_per_minute(load(default_run)).to_arrow_table().to_pylist()
    }
    assert got.keys() == want.keys() and len(got) > 100
    schema = get_schema("revenue_per_minute")
    for start, row in got.items():
        schema.validate(row)
        for column in ("gmv", "order_count", "units", "unique_users", "first_time_orders", "cancelled_gmv"):
            assert row[column] == want[start][column], (start, column)
        # Average to the cent, half up, from the SQL figures as an exact fraction.
        average = (
            Fraction(want[start]["gmv"]) / want[start]["order_count"] if want[start]["order_count"] else Fraction(0)
        )
        assert row["avg_order_value"] == Decimal(math.floor(average * 100 + Fraction(1, 2))) / 100
        assert (to_millis(row["window_end"]) - start) == 60_000


def test_revenue_by_category_region_matches_sql(default_run: Path) -> None:
    groups: dict[tuple[int, str, str], list[tuple[str, Any]]] = defaultdict(list)
    for event in _order_events(default_run):
        for (region, category), order_id, line in paid_lines(event):
            groups[(window_start_ms(event), region, category)].append((order_id, line))
    rng = random.Random(4)
    got = {
        key: _combine(lines, LineRevenue, lambda acc, pair: acc.add(pair), rng).record(*key)
        for key, lines in groups.items()
    }
    want = {
        (to_millis(r["window_start"]), r["region"], r["category"]): r
        for r in revenue_by_category_region(load(default_run)).to_arrow_table().to_pylist()
    }
    assert got.keys() == want.keys() and len(got) > 500
    schema = get_schema("revenue_by_category_region")
    for key, row in got.items():
        schema.validate(row)
        assert (row["gmv"], row["units"], row["order_count"]) == (
            want[key]["gmv"],
            want[key]["units"],
            want[key]["order_count"],
        ), key


def test_empty_window_average_is_zero() -> None:
    assert MinuteRevenue().record(0)["avg_order_value"] == 0


def test_only_paid_or_cancelled_minutes_have_a_row() -> None:
    """A minute of only CREATED events has no row; one CANCELLED event makes one (it used to crash
    the revenue job: the check read an attribute that does not exist)."""
    schema = get_schema("order_event")
    created = schema.validate(sample("order_event", status="CREATED"))
    cancelled = schema.validate(sample("order_event", status="CANCELLED", event_id="e-2"))
    assert not MinuteRevenue().add(created).has_row
    minute = MinuteRevenue().add(created).add(cancelled)
    assert minute.has_row and minute.record(0)["cancelled_gmv"] == cancelled["total_amount"]
