"""The explicit state and accumulator coders: values round-trip, and bytes written by a running
job (layout version 1, kept here as literals) stay readable by later code."""

from __future__ import annotations

from decimal import Decimal

import pytest

from beam_pipelines.fraud.pipeline import OrderSignalCoder, UserFraudStateCoder
from beam_pipelines.fraud.rules import FraudDetector, OrderSignal, UserFraudState
from beam_pipelines.revenue.catalog import CatalogEntry
from beam_pipelines.revenue.metrics import LineRevenue, MinuteRevenue
from beam_pipelines.revenue.pipeline import CatalogEntryCoder, LineRevenueCoder, MinuteRevenueCoder
from beam_pipelines.sessions.metrics import SessionAggregate
from beam_pipelines.sessions.pipeline import SessionAggregateCoder
from streamforge.config import load_config

SIGNAL = OrderSignal("e1", "o1", "u1", "CREATED", 1_000, Decimal("12.50"), "USD", True, "DE", None)


def _state() -> UserFraudState:
    state = UserFraudState()
    detector = FraudDetector(load_config().fraud)
    for i, (status, country, card) in enumerate(
        [
            ("CREATED", "DE", None),
            ("CREATED", "US", None),
            ("PAYMENT_FAILED", "US", "c1"),
            ("PAYMENT_FAILED", "US", "c2"),
        ]
    ):
        detector.observe(
            state,
            SIGNAL._replace(
                event_id=f"e{i}", status=status, at_ms=1_000 + i * 1_000, ip_country=country, card_fingerprint=card
            ),
        )
    return state


VALUES = [
    (OrderSignalCoder(), SIGNAL),
    (CatalogEntryCoder(), CatalogEntry(42, "garden")),
    (CatalogEntryCoder(), CatalogEntry(43, None)),
    (
        SessionAggregateCoder(),
        SessionAggregate(
            "u1",
            3,
            1_000,
            5_000,
            (1_000, "e1"),
            "mobile",
            "eu-west",
            {"page_views": 2, "purchase_count": 1},
            1_250,
            {"garden": 1},
        ),
    ),
    (MinuteRevenueCoder(), MinuteRevenue(1_250, 1, 2, {"u1"}, 1, 0)),
    (LineRevenueCoder(), LineRevenue(1_000, 2, {"o1", "o2"})),
]


@pytest.mark.parametrize("coder, value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip(coder, value) -> None:
    assert coder.decode(coder.encode(value)) == value


def test_the_fraud_state_round_trips_with_everything_the_rules_keep() -> None:
    state = _state()
    assert state.recent_orders and state.last_order_by_country and state.attempts
    coder = UserFraudStateCoder()
    assert coder.decode(coder.encode(state)) == state


def test_bytes_of_layout_version_1_stay_readable() -> None:
    """What a running job holds: if these literals stop decoding, a job could not be updated."""
    assert OrderSignalCoder().decode(b'[1,"e1","o1","u1","CREATED",1000,"12.50","USD",true,"DE",null]') == SIGNAL
    assert MinuteRevenueCoder().decode(b'[1,1250,1,2,["u1"],1,0]') == MinuteRevenue(1_250, 1, 2, {"u1"}, 1, 0)
    assert CatalogEntryCoder().decode(b'[1,42,"garden"]') == CatalogEntry(42, "garden")
    with pytest.raises(ValueError, match="layout version 2 is newer than this code"):
        CatalogEntryCoder().decode(b'[2,42,"garden"]')
