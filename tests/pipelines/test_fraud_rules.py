"""The fraud rules, without Beam: unit cases per rule, bounded state, and the simulator's
ground truth (every labelled case found once, nothing else flagged)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from beam_pipelines.fraud.rules import Alert, FraudDetector, OrderSignal, UserFraudState
from streamforge.config import load_config
from streamforge.schemas import get_schema
from tests.support.cli import simulate_to
from tests.support.samples import UNUSUAL_RULES, sample

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)


def order(
    status: str = "CREATED",
    *,
    minutes: float = 0,
    user: str = "U1",
    order_id: str | None = None,
    country: str = "GB",
    first: bool = False,
    total: float = 397.47,
    card: str | None = "fp_1",
) -> dict[str, Any]:
    """A validated order event (Python form) at T0 + ``minutes``."""
    n = next(_ids)
    record = sample(
        "order_event",
        event_id=f"e{n}",
        order_id=order_id or f"O{n}",
        user_id=user,
        status=status,
        event_time=(T0 + timedelta(minutes=minutes)).isoformat(),
        ip_country=country,
        is_first_order=first,
        card_fingerprint=card,
    )
    if total != 397.47:  # one line priced to reach the total
        record.update(
            items=[{"product_id": "P", "category": "jewelry", "quantity": 1, "unit_price": total}],
            subtotal=total,
            discount=0,
            shipping=0,
            total_amount=total,
        )
    return get_schema("order_event").validate(record)


def run(events: list[dict[str, Any]], detector: FraudDetector | None = None) -> list[Alert]:
    detector = detector or FraudDetector(load_config().fraud)
    state = UserFraudState()
    return [alert for event in events for alert in detector.observe(state, OrderSignal.of(event))]


def patterns(alerts: list[Alert]) -> list[str]:
    return [str(a.alert_type) for a in alerts]


class TestRapidOrders:
    def test_a_burst_is_one_alert(self) -> None:
        events = [order(minutes=m) for m in (0, 1, 2, 3, 4)]
        alerts = run(events)
        assert patterns(alerts) == ["RAPID_ORDERS"]
        assert alerts[0].order_id == events[2]["order_id"]  # the third order completes it
        assert alerts[0].related_event_ids == tuple(e["event_id"] for e in events[:3])

    def test_two_orders_are_not_a_burst(self) -> None:
        assert run([order(minutes=0), order(minutes=1)]) == []

    def test_orders_further_apart_than_the_window(self) -> None:
        assert run([order(minutes=m) for m in (0, 3, 6, 9)]) == []  # never 3 within 5 minutes

    def test_separate_bursts_are_separate_alerts(self) -> None:
        alerts = run([order(minutes=m) for m in (0, 1, 2, 30, 31, 32)])
        assert patterns(alerts) == ["RAPID_ORDERS", "RAPID_ORDERS"]
        assert alerts[0].alert_id != alerts[1].alert_id


class TestHighValueFirstOrder:
    def test_first_order_above_the_threshold(self) -> None:
        alerts = run([order(first=True, total=7500.0)])
        assert patterns(alerts) == ["HIGH_VALUE_FIRST_ORDER"]
        assert "7,500.00 EUR above 5,000.00" in alerts[0].description

    @pytest.mark.parametrize("first, total", [(False, 7500.0), (True, 5000.0), (True, 4999.99)])
    def test_not_flagged(self, first: bool, total: float) -> None:
        assert run([order(first=first, total=total)]) == []


class TestLocationAnomaly:
    def test_impossible_journey(self) -> None:
        events = [order(minutes=0, country="GB"), order(minutes=10, country="JP")]
        alerts = run(events)
        assert patterns(alerts) == ["LOCATION_ANOMALY"]
        assert alerts[0].related_event_ids == (events[0]["event_id"], events[1]["event_id"])
        assert "GB and JP" in alerts[0].description

    def test_neighbours_quickly_but_possible_later(self) -> None:
        assert patterns(run([order(minutes=0, country="GB"), order(minutes=10, country="DE")])) == ["LOCATION_ANOMALY"]
        assert run([order(minutes=0, country="GB"), order(minutes=60, country="DE")]) == []  # 638 km in 1 h

    def test_same_country_and_unknown_country(self) -> None:
        assert run([order(minutes=0, country="GB"), order(minutes=1, country="GB")]) == []
        assert run([order(minutes=0, country="GB"), order(minutes=1, country="FR")]) == []

    def test_the_journey_home_after_enough_time_is_fine(self) -> None:
        events = [order(minutes=0, country="GB"), order(minutes=10, country="AU"), order(minutes=60 * 24, country="GB")]
        assert patterns(run(events)) == ["LOCATION_ANOMALY"]


class TestCardTesting:
    def test_failed_payments_then_success(self) -> None:
        events = [order("PAYMENT_FAILED", minutes=m, order_id="O1") for m in (0, 1, 2)] + [
            order("PAID", minutes=3, order_id="O1")
        ]
        alerts = run(events)
        assert patterns(alerts) == ["CARD_TESTING"]
        assert alerts[0].related_event_ids == tuple(e["event_id"] for e in events)

    def test_many_cards_then_success(self) -> None:
        events = [order("PAYMENT_FAILED", minutes=m, card=f"fp_{m}") for m in (0, 1)] + [
            order("PAID", minutes=2, card="fp_9")
        ]
        assert patterns(run(events)) == ["CARD_TESTING"]  # 3 distinct cards, 2 failures

    def test_a_normal_retry_is_fine(self) -> None:
        assert run([order("PAYMENT_FAILED", minutes=0), order("PAID", minutes=1)]) == []

    def test_failures_without_success_or_outside_the_window(self) -> None:
        assert run([order("PAYMENT_FAILED", minutes=m) for m in (0, 1, 2, 3)]) == []
        assert run([order("PAYMENT_FAILED", minutes=m) for m in (0, 1, 2)] + [order("PAID", minutes=13)]) == []

    def test_attempts_are_used_up_by_the_alert(self) -> None:
        events = [order("PAYMENT_FAILED", minutes=m) for m in (0, 1, 2)] + [
            order("PAID", minutes=3),
            order("PAID", minutes=4),
        ]
        assert patterns(run(events)) == ["CARD_TESTING"]


def test_state_is_bounded_and_expires() -> None:
    detector = FraudDetector(load_config().fraud)
    state = UserFraudState()
    assert detector.expiry_ms(state) is None
    for minute in range(0, 600, 7):  # ten hours of orders and payments
        for event in (order(minutes=minute, country="GB"), order("PAID", minutes=minute + 1)):
            detector.observe(state, OrderSignal.of(event))
    assert len(state.recent_orders) <= 1 and len(state.attempts) <= 2 and len(state.last_order_by_country) == 1
    expiry = detector.expiry_ms(state)
    detector.expire(state, expiry - 1)
    assert not state.is_empty()
    detector.expire(state, expiry + 1)
    assert state.is_empty()


def test_alerts_are_valid_fraud_alert_records_with_stable_ids() -> None:
    events = [order(minutes=0, first=True, total=9000.0), order(minutes=1, country="JP"), order(minutes=2)]
    first, again = run(events), run(events)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    # A first order of 9,000, then JP and back to GB within two minutes: two impossible journeys.
    assert patterns(first) == ["HIGH_VALUE_FIRST_ORDER", "LOCATION_ANOMALY", "RAPID_ORDERS", "LOCATION_ANOMALY"]
    assert len({a.alert_id for a in first}) == 4
    schema = get_schema("fraud_alert")
    for alert in first:
        record = schema.validate(alert.record(detected_at=T0))
        assert schema.from_avro(schema.to_avro(record)) == record


# -- against the simulator's ground truth ------------------------------------------------------


def _orders_by_user(directory: Path) -> Iterator[list[dict[str, Any]]]:
    schema, seen, by_user = get_schema("order_event"), set(), defaultdict(list)
    for line in (directory / "orders.jsonl").read_bytes().splitlines():
        event = schema.from_json(line)
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            by_user[event["user_id"]].append(event)
    for events in by_user.values():
        yield sorted(events, key=lambda e: e["event_time"])


def _check_against_labels(directory: Path, detector: FraudDetector) -> None:
    alerts = [alert for events in _orders_by_user(directory) for alert in run(events, detector)]
    labels = [orjson.loads(line) for line in (directory / "fraud_labels.jsonl").read_bytes().splitlines()]
    assert Counter((str(a.alert_type), a.user_id) for a in alerts) == Counter(
        (label["pattern"], label["user_id"]) for label in labels
    )
    by_case = {(label["pattern"], label["user_id"]): label for label in labels}
    for alert in alerts:
        label = by_case[(str(alert.alert_type), alert.user_id)]
        assert alert.order_id in label["order_ids"]
        assert set(alert.related_event_ids) <= set(label["event_ids"])
    assert len({a.alert_id for a in alerts}) == len(alerts)


def test_ground_truth_default_rules(default_run: Path) -> None:
    _check_against_labels(default_run, FraudDetector(load_config().fraud))


def test_ground_truth_unusual_rules_with_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(UNUSUAL_RULES)
    monkeypatch.setenv("STREAMFORGE_CONFIG", str(config))
    run_dir = simulate_to(
        tmp_path / "run", "--duration", "3h", "--fraud-rate", "0.02", "--seed", "11", "--duplicates", "0.02"
    )
    _check_against_labels(run_dir, FraudDetector(load_config(config).fraud))
