"""Debezium change events as the PostgreSQL connector writes them (JSON, schemas disabled), for tests."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["envelope", "order", "product"]


def product(**values: Any) -> dict[str, Any]:
    row = {
        "id": 7,
        "sku": "P000007",
        "name": "Desk lamp",
        "category": "home_garden",
        "subcategory": None,
        "brand": "HomeCo 3",
        "price": "40.00",
        "original_price": "40.00",
        "stock_quantity": 50,
        "is_active": True,
        "seller_id": 3,
        "created_at": "2026-11-23T10:00:00.123456Z",
        "updated_at": "2026-11-23T10:00:00.123456Z",
    }
    return {**row, **values}


def order(**values: Any) -> dict[str, Any]:
    row = {
        "id": 3,
        "order_number": "SO-00000003",
        "customer_id": 11,
        "order_status": "PENDING",
        "total_amount": "99.90",
        "discount_amount": "0.00",
        "shipping_amount": "0.00",
        "payment_method": "card",
        "shipping_city": "Berlin",
        "created_at": "2026-11-23T10:00:00Z",
        "updated_at": "2026-11-23T10:00:00Z",
    }
    return {**row, **values}


def envelope(table: str, op: str, before: Any, after: Any, lsn: int, **source: Any) -> bytes:
    return orjson.dumps(
        {
            "before": before,
            "after": after,
            "op": op,
            "ts_ms": 1795000000500,
            "source": {
                "connector": "postgresql",
                "name": "cdc",
                "schema": "public",
                "table": table,
                "lsn": lsn,
                "txId": 900 + lsn,
                "ts_ms": 1795000000000,
                "snapshot": "false",
                **source,
            },
        }
    )
