"""The fraud rules over one user's order events: plain Python, no Beam.

The fraud job keys order events by user, turns each into an ``OrderSignal`` (the fields
the rules read), hands them over in event-time order, and keeps one ``UserFraudState`` per
user. The state holds only what a rule can still use — the
orders inside the rapid-orders window, the latest order per country while an impossible
journey from it is still possible, the payment attempts inside the card-testing window — and
``FraudDetector.expiry_ms`` says when all of it has aged out, so the job can clear it with a
timer and memory stays bounded however many users there are.

Pattern definitions (docs/simulator.md has the same table, the simulator injects them):

- RAPID_ORDERS: at least ``rapid_orders_count`` CREATED events within ``rapid_orders_window``.
  One alert per burst: the burst stays one instance while the window keeps enough orders.
- HIGH_VALUE_FIRST_ORDER: a CREATED event with ``is_first_order`` and ``total_amount`` above
  ``high_value_first_order``.
- LOCATION_ANOMALY: a CREATED event from an IP country at least ``min_travel_distance_km``
  from an earlier order's, sooner than travel at ``max_travel_speed_kmh`` allows. One alert
  per offending order.
- CARD_TESTING: a PAID event preceded within ``card_testing_window`` (itself included) by at
  least ``card_testing_failed_payments`` PAYMENT_FAILED events or by attempts with at least
  ``card_testing_distinct_cards`` card fingerprints. The attempts are used up by the alert.

Alert ids hash the pattern, the user and the event that anchors the instance, so replaying
the same events gives the same ids.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from streamforge.config import FraudRules
from streamforge.events import FraudPattern, OrderStatus
from streamforge.geo import COUNTRIES, distance_km
from streamforge.timeutil import format_duration, millis_to_datetime, to_millis

__all__ = ["Alert", "FraudDetector", "OrderSignal", "UserFraudState"]

#: The order statuses some rule reads; the others (CANCELLED, SHIPPED, DELIVERED) change nothing.
OBSERVED_STATUSES = frozenset({OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.PAYMENT_FAILED})


class OrderSignal(NamedTuple):
    """An order event as the rules see it: only the fields they read, so a user's pending
    events are cheap to keep in state and to send through a shuffle."""

    event_id: str
    order_id: str
    user_id: str
    status: str
    at_ms: int
    total_amount: Decimal
    currency: str
    is_first_order: bool
    ip_country: str
    card_fingerprint: str | None

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> OrderSignal:
        """From a validated order event (Python form)."""
        return cls(
            event["event_id"],
            event["order_id"],
            event["user_id"],
            str(event["status"]),
            to_millis(event["event_time"]),
            event["total_amount"],
            event["currency"],
            event["is_first_order"],
            event["ip_country"],
            event.get("card_fingerprint"),
        )


@dataclass(slots=True)
class _Order:
    """A CREATED event, as far as the rules need it."""

    event_id: str
    order_id: str
    at_ms: int
    country: str


@dataclass(slots=True)
class _Attempt:
    """A PAID or PAYMENT_FAILED event."""

    event_id: str
    at_ms: int
    failed: bool
    card: str | None


@dataclass
class UserFraudState:
    """What the rules remember about one user (small, and empty once it has expired)."""

    recent_orders: list[_Order] = field(default_factory=list)
    burst_anchor: str | None = None  # first order of the RAPID_ORDERS burst under way
    last_order_by_country: dict[str, _Order] = field(default_factory=dict)
    attempts: list[_Attempt] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.recent_orders or self.last_order_by_country or self.attempts)

    def copy(self) -> UserFraudState:
        """An independent copy (the detector changes the state it is given)."""
        return UserFraudState.from_fields(self.to_fields())

    def to_fields(self) -> list[Any]:
        """Plain values only (for the streaming job's explicit state coder)."""
        return [
            [[o.event_id, o.order_id, o.at_ms, o.country] for o in self.recent_orders],
            self.burst_anchor,
            [[o.event_id, o.order_id, o.at_ms, o.country] for o in self.last_order_by_country.values()],
            [[a.event_id, a.at_ms, a.failed, a.card] for a in self.attempts],
        ]

    @classmethod
    def from_fields(cls, fields: list[Any]) -> UserFraudState:
        by_country = [_Order(*o) for o in fields[2]]
        return cls(
            [_Order(*o) for o in fields[0]],
            fields[1],
            {o.country: o for o in by_country},
            [_Attempt(*a) for a in fields[3]],
        )


@dataclass(frozen=True)
class Alert:
    """One detected pattern instance; ``record`` gives the fraud_alert schema's Python form."""

    alert_id: str
    user_id: str
    order_id: str
    alert_type: FraudPattern
    risk_score: float
    description: str
    event_time_ms: int
    related_event_ids: tuple[str, ...]

    def record(self, detected_at: datetime) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "user_id": self.user_id,
            "order_id": self.order_id,
            "alert_type": str(self.alert_type),
            "risk_score": self.risk_score,
            "description": self.description,
            "detected_at": detected_at,
            "event_time": millis_to_datetime(self.event_time_ms),
            "related_event_ids": list(self.related_event_ids),
        }


def alert_id(pattern: FraudPattern, user_id: str, anchor_event_id: str) -> str:
    return hashlib.sha256(f"{pattern}|{user_id}|{anchor_event_id}".encode()).hexdigest()[:32]


def _farthest_km() -> float:
    return max(distance_km(a, b) or 0.0 for a in COUNTRIES for b in COUNTRIES)


class FraudDetector:
    """Applies the rules in ``FraudRules`` to one user's order events at a time."""

    def __init__(self, rules: FraudRules):
        self.rules = rules
        self._rapid_ms = int(rules.rapid_orders_window.total_seconds() * 1000)
        self._card_ms = int(rules.card_testing_window.total_seconds() * 1000)
        self._high_value = rules.high_value_first_order
        # After this long, no journey between known countries is too fast any more.
        self._travel_ms = math.ceil(_farthest_km() / rules.max_travel_speed_kmh * 3_600_000)

    def observe(self, state: UserFraudState, event: OrderSignal) -> list[Alert]:
        """Update ``state`` with one order event; the alerts it completes.

        Events must come in event-time order for each user.
        """
        status = event.status
        if status == OrderStatus.CREATED:
            order = _Order(event.event_id, event.order_id, event.at_ms, event.ip_country)
            alerts = [*self._rapid_orders(state, event, order), *self._high_value_first_order(event, order)]
            alerts += self._location_anomaly(state, event, order)
            return alerts
        if status in (OrderStatus.PAID, OrderStatus.PAYMENT_FAILED):
            attempt = _Attempt(
                event.event_id, event.at_ms, status == OrderStatus.PAYMENT_FAILED, event.card_fingerprint
            )
            return self._card_testing(state, event, attempt)
        return []

    def evaluate(self, state: UserFraudState, events: Iterable[OrderSignal]) -> Iterator[Alert]:
        """Observe ``events`` of one user in event-time order (sorted here, ties by event id),
        first forgetting what has aged out by each event's time."""
        for event in sorted(events, key=lambda e: (e.at_ms, e.event_id)):
            self.expire(state, event.at_ms)
            yield from self.observe(state, event)

    def expiry_ms(self, state: UserFraudState) -> int | None:
        """When everything in ``state`` will have aged out (None when it is empty)."""
        times = [o.at_ms + self._rapid_ms for o in state.recent_orders]
        times += [o.at_ms + self._travel_ms for o in state.last_order_by_country.values()]
        times += [a.at_ms + self._card_ms for a in state.attempts]
        return max(times) if times else None

    def expire(self, state: UserFraudState, now_ms: int) -> None:
        """Drop what no rule can use at event time ``now_ms`` or later."""
        state.recent_orders = [o for o in state.recent_orders if now_ms - o.at_ms <= self._rapid_ms]
        if not state.recent_orders:
            state.burst_anchor = None
        state.last_order_by_country = {
            c: o for c, o in state.last_order_by_country.items() if now_ms - o.at_ms <= self._travel_ms
        }
        state.attempts = [a for a in state.attempts if now_ms - a.at_ms <= self._card_ms]

    # -- the rules -------------------------------------------------------------------------

    def _rapid_orders(self, state: UserFraudState, event: OrderSignal, order: _Order) -> list[Alert]:
        window = [o for o in state.recent_orders if order.at_ms - o.at_ms <= self._rapid_ms]
        window.append(order)
        state.recent_orders = window
        count = self.rules.rapid_orders_count
        if len(window) < count:
            state.burst_anchor = None  # the burst, if any, is over
            return []
        if state.burst_anchor is not None:
            return []  # still the same burst: already alerted
        state.burst_anchor = window[0].event_id
        span_s = (order.at_ms - window[0].at_ms) / 1000
        return [
            Alert(
                alert_id=alert_id(FraudPattern.RAPID_ORDERS, event.user_id, state.burst_anchor),
                user_id=event.user_id,
                order_id=order.order_id,
                alert_type=FraudPattern.RAPID_ORDERS,
                risk_score=min(0.95, 0.6 + 0.1 * (len(window) - count)),
                description=f"{len(window)} orders in {span_s:.0f} s (rule: {count} within {format_duration(self.rules.rapid_orders_window)})",
                event_time_ms=order.at_ms,
                related_event_ids=tuple(o.event_id for o in window),
            )
        ]

    def _high_value_first_order(self, event: OrderSignal, order: _Order) -> list[Alert]:
        total = event.total_amount
        if not event.is_first_order or total <= self._high_value:
            return []
        ratio = float(total / self._high_value)
        return [
            Alert(
                alert_id=alert_id(FraudPattern.HIGH_VALUE_FIRST_ORDER, event.user_id, order.event_id),
                user_id=event.user_id,
                order_id=order.order_id,
                alert_type=FraudPattern.HIGH_VALUE_FIRST_ORDER,
                risk_score=round(min(0.95, 0.5 + 0.25 * (ratio - 1)), 4),
                description=f"first order of {total:,.2f} {event.currency} above {self._high_value:,.2f}",
                event_time_ms=order.at_ms,
                related_event_ids=(order.event_id,),
            )
        ]

    def _location_anomaly(self, state: UserFraudState, event: OrderSignal, order: _Order) -> list[Alert]:
        if order.country not in COUNTRIES:
            return []  # no location to compare
        worst: tuple[float, _Order, float] | None = None
        for country, earlier in state.last_order_by_country.items():
            km = distance_km(country, order.country) or 0.0
            elapsed_ms = order.at_ms - earlier.at_ms
            if country == order.country or km < self.rules.min_travel_distance_km or elapsed_ms > self._travel_ms:
                continue
            speed = math.inf if elapsed_ms <= 0 else km / (elapsed_ms / 3_600_000)
            if speed > self.rules.max_travel_speed_kmh and (worst is None or speed > worst[0]):
                worst = (speed, earlier, km)
        state.last_order_by_country[order.country] = order
        if worst is None:
            return []
        speed, earlier, km = worst
        minutes = (order.at_ms - earlier.at_ms) / 60_000
        return [
            Alert(
                alert_id=alert_id(FraudPattern.LOCATION_ANOMALY, event.user_id, order.event_id),
                user_id=event.user_id,
                order_id=order.order_id,
                alert_type=FraudPattern.LOCATION_ANOMALY,
                risk_score=round(min(0.99, 0.7 + 0.05 * math.log2(speed / self.rules.max_travel_speed_kmh)), 4),
                description=(
                    f"orders from {earlier.country} and {order.country}, {km:,.0f} km apart in "
                    f"{minutes:.0f} min (would need {speed:,.0f} km/h)"
                ),
                event_time_ms=order.at_ms,
                related_event_ids=(earlier.event_id, order.event_id),
            )
        ]

    def _card_testing(self, state: UserFraudState, event: OrderSignal, attempt: _Attempt) -> list[Alert]:
        window = [a for a in state.attempts if attempt.at_ms - a.at_ms <= self._card_ms]
        window.append(attempt)
        state.attempts = window
        if attempt.failed:
            return []
        failures = sum(a.failed for a in window)
        cards = len({a.card for a in window if a.card is not None})
        rules = self.rules
        if failures < rules.card_testing_failed_payments and cards < rules.card_testing_distinct_cards:
            return []
        state.attempts = []  # these attempts are this instance's
        excess = max(failures - rules.card_testing_failed_payments, cards - rules.card_testing_distinct_cards, 0)
        return [
            Alert(
                alert_id=alert_id(FraudPattern.CARD_TESTING, event.user_id, attempt.event_id),
                user_id=event.user_id,
                order_id=event.order_id,
                alert_type=FraudPattern.CARD_TESTING,
                risk_score=min(0.99, 0.7 + 0.05 * excess),
                description=f"{failures} failed payments with {cards} card(s) before a successful payment",
                event_time_ms=attempt.at_ms,
                related_event_ids=tuple(a.event_id for a in window),
            )
        ]
