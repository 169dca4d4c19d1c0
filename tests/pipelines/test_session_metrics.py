"""Session aggregates, without Beam: compared with SQL over the default run, built from
shuffled events split into partial aggregates merged in random order (as a runner may)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from beam_pipelines.sessions.metrics import SessionAggregate, session_id
from streamforge.schemas import get_schema
from tests.support.reference import load, session_windows
from tests.support.samples import sample

GAP_MS = 30 * 60_000


def _click(event_type: str, second: int, **fields: Any) -> dict[str, Any]:
    record = sample(
        "clickstream_event",
        event_id=f"e{second}-{event_type}",
        event_type=event_type,
        event_time=f"2026-11-01T08:00:{second:02d}.000Z",
        **fields,
    )
    if event_type == "purchase":
        record["order_id"] = "O1"
    return get_schema("clickstream_event").validate(record)


def _merged(events: list[dict[str, Any]], rng: random.Random) -> SessionAggregate:
    """Aggregate ``events`` the way a runner might: shuffled, in partial aggregates, merged in any order."""
    events = events[:]
    rng.shuffle(events)
    parts = [SessionAggregate() for _ in range(rng.randint(1, 4))]
    for event in events:
        parts[rng.randrange(len(parts))].add(event)
    rng.shuffle(parts)
    total = SessionAggregate()
    for part in parts:
        total.merge(part)
    return total


def test_a_session_row() -> None:
    events = [
        _click("page_view", 0, device_type="tablet", page_url="https://shop.example.com/"),
        _click("product_view", 10, category="books", price=12.5, product_id="P-BOO-1", device_type="mobile"),
        _click("product_view", 20, category="toys_games", price=9.99, product_id="P-TOY-1"),
        _click("product_view", 30, category="books", price=12.5, product_id="P-BOO-2"),
        _click("add_to_cart", 40, category="books", price=12.5, product_id="P-BOO-2", quantity=1),
        _click("checkout_start", 50, price=12.5, quantity=1),
        _click("purchase", 59, price=17.49, quantity=1),
    ]
    row = _merged(events, random.Random(1)).record()
    assert row["session_start"] == datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    assert row["duration_seconds"] == 59.0 and row["event_count"] == 7
    assert (
        row["page_views"],
        row["product_views"],
        row["add_to_cart_count"],
        row["checkout_count"],
        row["purchase_count"],
    ) == (1, 3, 1, 1, 1)
    assert row["total_revenue"] == Decimal("17.49")
    assert (row["device_type"], row["primary_category"]) == ("tablet", "books")  # the first event's device
    assert row["converted"] and not row["cart_abandoned"]
    assert row["session_id"] == session_id("U00000001", 1_793_520_000_000) != session_id("U00000001", 1_793_520_000_001)
    get_schema("session_aggregate").validate(row)


def test_abandoned_cart_and_no_product_views() -> None:
    cart = _merged(
        [_click("add_to_cart", 5, category="books", price=1, product_id="P", quantity=1)], random.Random(2)
    ).record()
    assert cart["cart_abandoned"] and not cart["converted"] and cart["primary_category"] is None


def test_merging_empty_aggregates_changes_nothing() -> None:
    one = SessionAggregate().add(_click("page_view", 3, page_url="https://shop.example.com/"))
    assert SessionAggregate().merge(one).merge(SessionAggregate()).record() == one.record()


@pytest.mark.slow
def test_every_session_of_the_default_run_matches_sql(default_run: Path) -> None:
    con = load(default_run)
    expected = {
        row["user_id"] + f"#{row['n']}": row for row in session_windows(con, GAP_MS).to_arrow_table().to_pylist()
    }
    clicks = get_schema("clickstream_event")
    by_id = {}
    for line in (default_run / "clickstream.jsonl").read_bytes().splitlines():
        event = clicks.from_json(line)
        by_id[event["event_id"]] = event
    rng = random.Random(7)
    sessions = get_schema("session_aggregate")
    for key, want in expected.items():
        got = _merged([by_id[i] for i in want["event_ids"]], rng).record()
        sessions.validate(got)
        for column in (
            "user_id",
            "session_start",
            "session_end",
            "event_count",
            "page_views",
            "product_views",
            "add_to_cart_count",
            "remove_from_cart_count",
            "checkout_count",
            "purchase_count",
            "total_revenue",
            "device_type",
            "geo_region",
            "primary_category",
        ):
            assert got[column] == want[column], (key, column)
    assert len(expected) > 20_000
