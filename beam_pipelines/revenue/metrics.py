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


def _cents(amount: Decimal) -> int:
    """Money in integer cents: exact (amounts have the schema's two decimal places), and
    cheap to add and to pickle when accumulators cross a shuffle."""
    return int(amount * 100)


def _amount(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(_CENT)


@dataclass(slots=True)
class MinuteRevenue:
    gmv_cents: int = 0
    order_count: int = 0
    units: int = 0
    buyers: set[str] = field(default_factory=set)
    first_time_orders: int = 0
    cancelled_cents: int = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return MinuteRevenue, (
            self.gmv_cents,
            self.order_count,
            self.units,
            self.buyers,
            self.first_time_orders,
            self.cancelled_cents,
        )

    def add(self, event: Mapping[str, Any]) -> MinuteRevenue:
        """Add one validated order event; statuses other than PAID and CANCELLED do not count."""
        status = event["status"]
        if status == OrderStatus.PAID:
            self.gmv_cents += _cents(event["total_amount"])
            self.order_count += 1
            self.units += sum(item["quantity"] for item in event["items"])
            self.buyers.add(event["user_id"])
            self.first_time_orders += event["is_first_order"]
        elif status == OrderStatus.CANCELLED:
            self.cancelled_cents += _cents(event["total_amount"])
        return self

    def merge(self, other: MinuteRevenue) -> MinuteRevenue:
        self.gmv_cents += other.gmv_cents
        self.order_count += other.order_count
        self.units += other.units
        self.buyers |= other.buyers
        self.first_time_orders += other.first_time_orders
        self.cancelled_cents += other.cancelled_cents
        return self

    @property
    def has_row(self) -> bool:
        """A minute of only CREATED, PAYMENT_FAILED, SHIPPED or DELIVERED events has no revenue row."""
        return bool(self.order_count or self.cancelled_cents)

    def record(self, start_ms: int, size_ms: int = WINDOW_MS, pane_index: int = 0) -> dict[str, Any]:
        """The ``revenue_per_minute`` row for the window starting at ``start_ms`` (its
        ``pane_index``-th firing)."""
        gmv = _amount(self.gmv_cents)
        average = (gmv / self.order_count).quantize(_CENT, ROUND_HALF_UP) if self.order_count else Decimal("0.00")
        return {
            **_window(start_ms, size_ms),
            "gmv": gmv,
            "order_count": self.order_count,
            "units": self.units,
            "avg_order_value": average,
            "unique_users": len(self.buyers),
            "first_time_orders": self.first_time_orders,
            "cancelled_gmv": _amount(self.cancelled_cents),
            "pane_index": pane_index,
        }


@dataclass(slots=True)
class LineRevenue:
    gmv_cents: int = 0
    units: int = 0
    orders: set[str] = field(default_factory=set)

    def __reduce__(self) -> tuple[Any, ...]:
        return LineRevenue, (self.gmv_cents, self.units, self.orders)

    def add(self, line: tuple[str, Mapping[str, Any]]) -> LineRevenue:
        """Add one PAID order line: ``(order_id, item)``."""
        order_id, item = line
        self.gmv_cents += _cents(item["unit_price"]) * item["quantity"]
        self.units += item["quantity"]
        self.orders.add(order_id)
        return self

    def merge(self, other: LineRevenue) -> LineRevenue:
        self.gmv_cents += other.gmv_cents
        self.units += other.units
        self.orders |= other.orders
        return self

    def record(
        self, start_ms: int, region: str, category: str, size_ms: int = WINDOW_MS, pane_index: int = 0
    ) -> dict[str, Any]:
        """The ``revenue_by_category_region`` row (of the window's ``pane_index``-th firing)."""
        return {
            **_window(start_ms, size_ms),
            "region": region,
            "category": category,
            "gmv": _amount(self.gmv_cents),
            "units": self.units,
            "order_count": len(self.orders),
            "pane_index": pane_index,
        }


def paid_lines(event: Mapping[str, Any]) -> Iterator[tuple[tuple[str, str], str, Mapping[str, Any]]]:
    """((shipping region, category), order id, line) for each line of a PAID event."""
    if event["status"] == OrderStatus.PAID:
        for item in event["items"]:
            yield (event["shipping_region"], item["category"]), event["order_id"], item
