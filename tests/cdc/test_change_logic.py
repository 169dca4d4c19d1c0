"""The CDC job's plain-Python parts: schema file, envelopes, business events, replicas (no Beam, no servers)."""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from beam_pipelines.cdc.envelope import HEARTBEAT, TOMBSTONE, InvalidChange, parse_change
from beam_pipelines.cdc.events import order_status_transition, price_change, stock_alert
from beam_pipelines.cdc.replicas import DuckDBReplicas
from streamforge.cdc.lifecycle import transition_problem
from streamforge.cdc.tables import load_source_tables, parse_schema_sql
from tests.support.changes import envelope, order, product

TABLES = load_source_tables()
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def test_the_schema_file_gives_every_table_its_columns_types_and_key() -> None:
    assert set(TABLES) == {"products", "customers", "orders", "order_items", "inventory_movements"}
    products = TABLES["products"]
    assert products.primary_key == ("id",)
    assert products.column_names[:4] == ("id", "sku", "name", "category")
    assert products.column("price").pg_type == "numeric(12,2)" and not products.column("price").nullable
    assert products.column("subcategory").nullable
    with pytest.raises(ValueError, match="no primary key"):
        parse_schema_sql("CREATE TABLE t (\n    a text\n);")
    with pytest.raises(ValueError, match="unsupported type"):
        parse_schema_sql("CREATE TABLE t (\n    a money PRIMARY KEY\n);")


def test_envelopes_become_typed_changes() -> None:
    change = parse_change(envelope("products", "u", product(price="40.00"), product(price="31.5"), 1234), TABLES)
    assert (change.table, change.op, change.key, change.lsn, change.tx_id) == ("products", "u", (7,), 1234, 2134)
    assert change.row["price"] == Decimal("31.50") and change.previous["price"] == Decimal("40.00")
    assert change.row["created_at"] == datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert change.key_json == '{"id":7}' and not change.snapshot
    deleted = parse_change(envelope("products", "d", product(), None, 1300), TABLES)
    assert deleted.deleted and deleted.row["sku"] == "P000007"
    snapshot = parse_change(envelope("products", "r", None, product(), 10, snapshot="true"), TABLES)
    assert snapshot.snapshot
    assert parse_change(b"null", TABLES) == TOMBSTONE
    assert parse_change(b'{"ts_ms": 1795000000000}', TABLES) == HEARTBEAT
    added = parse_change(envelope("products", "u", product(), product(weight_kg=1.25), 1400), TABLES)
    assert added.row["weight_kg"] == 1.25  # a column the schema file does not know yet


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        (b"{oops", "invalid_json", "not JSON"),
        (b"[1]", "invalid_envelope", "got list"),
        (envelope("products", "t", None, None, 1), "invalid_envelope", "op: expected one of"),
        (envelope("suppliers", "c", None, {"id": 1}, 1), "unknown_table", "public.suppliers is not a captured table"),
        (envelope("products", "c", None, product(), 1, schema="audit"), "unknown_table", "audit.products"),
        (envelope("products", "c", None, product(), -5), "invalid_envelope", "source.lsn"),
        (envelope("products", "c", None, None, 1), "invalid_envelope", "after: an insert needs the row image"),
        (envelope("products", "d", None, product(), 1), "invalid_envelope", "before: a delete needs the row image"),
        (envelope("products", "c", None, product(id=None), 1), "invalid_envelope", "primary key column(s) id"),
        (
            envelope("products", "c", None, product(price="twelve"), 1),
            "invalid_value",
            "products.price (numeric(12,2))",
        ),
        (envelope("products", "c", None, product(stock_quantity="5"), 1), "invalid_value", "expected an integer"),
        (envelope("products", "c", None, product(created_at="yesterday"), 1), "invalid_value", "ISO 8601"),
        (envelope("products", "c", None, product(name=None), 1), "invalid_value", "products.name is NOT NULL"),
        (envelope("products", "u", product(price=7), product(), 1), "invalid_value", "before: products.price"),
    ],
)
def test_malformed_envelopes_are_rejected_with_the_reason(payload: bytes, reason: str, message: str) -> None:
    with pytest.raises(InvalidChange, match=re.escape(message)) as caught:
        parse_change(payload, TABLES)
    assert caught.value.reason == reason


def _change(table: str, op: str, before: Any, after: Any, lsn: int):
    return parse_change(envelope(table, op, before, after, lsn), TABLES)


def test_price_changes_carry_old_new_and_percent() -> None:
    event = price_change(_change("products", "u", product(price="40.00"), product(price="30.00"), 5))
    assert (event["old_price"], event["new_price"], event["change_pct"], event["lsn"]) == (
        Decimal("40.00"),
        Decimal("30.00"),
        -25.0,
        5,
    )
    assert price_change(_change("products", "u", product(), product(stock_quantity=3), 6)) is None
    assert price_change(_change("products", "c", None, product(), 7)) is None
    free = price_change(_change("products", "u", product(price="0.00"), product(price="5.00"), 8))
    assert free["change_pct"] is None


@pytest.mark.parametrize(
    ("before", "after", "op", "expected"),
    [
        (50, 9, "u", ("LOW_STOCK", 50)),
        (9, 8, "u", None),  # already low: no new alert on every sale
        (9, 0, "u", ("OUT_OF_STOCK", 9)),
        (0, 0, "u", None),
        (10, 10, "u", None),
        (None, 3, "c", ("LOW_STOCK", None)),  # first seen below the threshold
        (None, 0, "r", ("OUT_OF_STOCK", None)),
        (None, 50, "c", None),
    ],
)
def test_stock_alerts_fire_when_the_level_crosses(before: int | None, after: int, op: str, expected: Any) -> None:
    change = _change(
        "products", op, None if before is None else product(stock_quantity=before), product(stock_quantity=after), 9
    )
    alert = stock_alert(change, threshold=10)
    assert (None if alert is None else (alert["alert_type"], alert["previous_quantity"])) == expected


def test_order_status_transitions_are_checked_against_the_lifecycle() -> None:
    placed = order_status_transition(_change("orders", "c", None, order(), 1))
    assert (placed["from_status"], placed["to_status"], placed["is_valid"]) == (None, "PENDING", True)
    paid = order_status_transition(_change("orders", "u", order(), order(order_status="PAID"), 2))
    assert paid["is_valid"] and paid["anomaly"] is None
    back = order_status_transition(
        _change("orders", "u", order(order_status="DELIVERED"), order(order_status="PENDING"), 3)
    )
    assert not back["is_valid"] and back["anomaly"] == "DELIVERED -> PENDING is not allowed (only REFUNDED)"
    assert order_status_transition(_change("orders", "u", order(), order(shipping_city="Paris"), 4)) is None
    assert order_status_transition(_change("orders", "r", None, order(order_status="PAID"), 4)) is None
    assert transition_problem("REFUNDED", "PAID") == "REFUNDED is final; it cannot become PAID"
    assert transition_problem(None, "PAID") == "a new order must start PENDING, not PAID"


def _replica(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT id, price, stock_quantity, _lsn, _deleted FROM products_current ORDER BY id").fetchall()


def test_replicas_converge_whatever_the_order_and_however_often_changes_arrive(tmp_path) -> None:
    """Applying a change history in any order, with any redeliveries, leaves the final state."""
    history = [
        _change("products", "c", None, product(id=1, price="10.00"), 100),
        _change("products", "c", None, product(id=2, price="20.00"), 101),
        _change("products", "u", product(id=1, price="10.00"), product(id=1, price="11.00"), 102),
        _change("products", "d", product(id=2, price="20.00"), None, 103),
        _change("products", "u", product(id=1, price="11.00"), product(id=1, price="12.00", stock_quantity=4), 104),
        _change("products", "c", None, product(id=3, price="30.00"), 105),
    ]
    expected = [
        (1, Decimal("12.00"), 4, 104, False),
        (2, Decimal("20.00"), 50, 103, True),
        (3, Decimal("30.00"), 50, 105, False),
    ]
    rng = random.Random(5)
    for attempt in range(20):
        path = str(tmp_path / f"w{attempt}.duckdb")
        with duckdb.connect(path) as con:
            replicas = DuckDBReplicas(con, path, {"products": TABLES["products"]})
            deliveries = history + rng.sample(history, rng.randint(0, len(history)))
            rng.shuffle(deliveries)
            applied = stale = 0
            while deliveries:  # in bundles of random size
                size = rng.randint(1, 4)
                result = replicas.apply(deliveries[:size], NOW)
                deliveries = deliveries[size:]
                applied, stale = applied + result.applied, stale + result.stale
            assert _replica(con) == expected
            assert applied >= 3


def test_a_column_added_upstream_is_added_to_the_replica(tmp_path) -> None:
    path = str(tmp_path / "w.duckdb")
    with duckdb.connect(path) as con:
        replicas = DuckDBReplicas(con, path, {"products": TABLES["products"]})
        replicas.apply([_change("products", "c", None, product(id=1), 1)], NOW)
        result = replicas.apply(
            [_change("products", "u", product(id=1), product(id=1, weight_kg=2.5, tags='["a"]'), 2)], NOW
        )
        assert result.columns_added == 2
        assert con.execute("SELECT weight_kg, tags FROM products_current").fetchall() == [(2.5, '["a"]')]
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'products_current'"
            ).fetchall()
        )
        assert (types["weight_kg"], types["tags"], types["price"]) == ("DOUBLE", "VARCHAR", "DECIMAL(12,2)")
