"""Revenue math as mergeable aggregates: plain Python, no Beam.

The revenue job puts order events in one-minute tumbling event-time windows and combines
them in parallel: partial aggregates built on any subset of a window's events merge into
the window's row, so no step needs all of a window's events in one place (the old design
aggregated in one global, non-parallel window).

- ``MinuteRevenue`` -> ``revenue_per_minute``: PAID orders' ``total_amount`` (gmv), count,
  units, distinct buyers, first-time orders, and the ``total_amount`` of CANCELLED events.
- ``LineRevenue`` -> ``revenue_by_category_region``: PAID order lines per shipping region and
  product category: ``quantity * unit_price``, units, distinct orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterator, Mapping

from streamforge.events import OrderStatus
from streamforge.timeutil import millis_to_datetime, to_millis

__all__ = ["WINDOW_MS", "LineRevenue", "MinuteRevenue", "paid_lines", "window_start_ms"]

WINDOW_MS = 60_000
_CENT = Decimal("0.01")


def window_start_ms(event: Mapping[str, Any], size_ms: int = WINDOW_MS) -> int:
    at_ms = to_millis(event["event_time"])
    return at_ms - at_ms % size_ms


def _window(start_ms: int, size_ms: int) -> dict[str, Any]:
    return {"window_start": millis_to_datetime(start_ms), "window_end": millis_to_datetime(start_ms + size_ms)}


@dataclass(slots=True)
class MinuteRevenue:
    gmv: Decimal = Decimal("0.00")
    order_count: int = 0
    units: int = 0
    buyers: set[str] = field(default_factory=set)
    first_time_orders: int = 0
    cancelled_gmv: Decimal = Decimal("0.00")

    def add(self, event: Mapping[str, Any]) -> MinuteRevenue:
        """Add one validated order event; statuses other than PAID and CANCELLED do not count."""
        status = event["status"]
        if status == OrderStatus.PAID:
            self.gmv += event["total_amount"]
            self.order_count += 1
            self.units += sum(item["quantity"] for item in event["items"])
            self.buyers.add(event["user_id"])
            self.first_time_orders += event["is_first_order"]
        elif status == OrderStatus.CANCELLED:
            self.cancelled_gmv += event["total_amount"]
        return self

    def merge(self, other: MinuteRevenue) -> MinuteRevenue:
        self.gmv += other.gmv
        self.order_count += other.order_count
        self.units += other.units
        self.buyers |= other.buyers
        self.first_time_orders += other.first_time_orders
        self.cancelled_gmv += other.cancelled_gmv
        return self

    def record(self, start_ms: int, size_ms: int = WINDOW_MS) -> dict[str, Any]:
        """The ``revenue_per_minute`` row for the window starting at ``start_ms``."""
        average = (self.gmv / self.order_count).quantize(_CENT, ROUND_HALF_UP) if self.order_count else Decimal("0.00")
        return {
            **_window(start_ms, size_ms),
            "gmv": self.gmv,
            "order_count": self.order_count,
            "units": self.units,
            "avg_order_value": average,
            "unique_users": len(self.buyers),
            "first_time_orders": self.first_time_orders,
            "cancelled_gmv": self.cancelled_gmv,
        }


@dataclass(slots=True)
class LineRevenue:
    gmv: Decimal = Decimal("0.00")
    units: int = 0
    orders: set[str] = field(default_factory=set)

    def add(self, order_id: str, item: Mapping[str, Any]) -> LineRevenue:
        self.gmv += item["unit_price"] * item["quantity"]
        self.units += item["quantity"]
        self.orders.add(order_id)
        return self

    def merge(self, other: LineRevenue) -> LineRevenue:
        self.gmv += other.gmv
        self.units += other.units
        self.orders |= other.orders
        return self

    def record(self, start_ms: int, region: str, category: str, size_ms: int = WINDOW_MS) -> dict[str, Any]:
        """The ``revenue_by_category_region`` row."""
        return {**_window(start_ms, size_ms), "region": region, "category": category,
                "gmv": self.gmv, "units": self.units, "order_count": len(self.orders)}


def paid_lines(event: Mapping[str, Any]) -> Iterator[tuple[tuple[str, str], str, Mapping[str, Any]]]:
    """((shipping region, category), order id, line) for each line of a PAID event."""
    if event["status"] == OrderStatus.PAID:
        for item in event["items"]:
            yield (event["shipping_region"], item["category"]), event["order_id"], item
