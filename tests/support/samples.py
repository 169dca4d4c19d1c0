"""Hand-written test inputs: one valid record per schema subject, and an unusual fraud rule set."""

from __future__ import annotations

import copy
from typing import Any

CLICK = {
    "event_id": "e-click-1",
    "user_id": "U00000001",
    "session_id": "S0001",
    "event_type": "add_to_cart",
    "product_id": "P-ELE-0001",
    "category": "electronics",
    "price": 199.99,
    "quantity": 2,
    "event_time": "2026-11-01T08:00:00.123Z",
    "device_type": "mobile",
    "geo_region": "eu-west",
    "page_url": "https://shop.example.com/p/P-ELE-0001",
    "referrer": None,
    "user_agent": "test-agent",
    "order_id": None,
}
ORDER = {
    "event_id": "e-order-1",
    "order_id": "O0001",
    "user_id": "U00000001",
    "session_id": "S0001",
    "status": "CREATED",
    "items": [
        {"product_id": "P-ELE-0001", "category": "electronics", "quantity": 2, "unit_price": 199.99},
        {"product_id": "P-BOO-0002", "category": "books", "quantity": 1, "unit_price": 12.5},
    ],
    "subtotal": 412.48,
    "discount": 20.0,
    "shipping": 4.99,
    "total_amount": 397.47,
    "currency": "EUR",
    "payment_method": "card",
    "card_fingerprint": "fp_0001",
    "shipping_region": "eu-west",
    "ip_country": "GB",
    "event_time": "2026-11-01T08:05:00.000Z",
    "is_first_order": True,
}
ALERT = {
    "alert_id": "a-1",
    "user_id": "U00000001",
    "order_id": "O0001",
    "alert_type": "RAPID_ORDERS",
    "risk_score": 0.85,
    "description": "3 orders in 2m",
    "detected_at": "2026-11-01T08:06:00.000Z",
    "event_time": "2026-11-01T08:05:00.000Z",
    "related_event_ids": ["e1", "e2", "e3"],
}
SESSION = {
    "user_id": "U00000001",
    "session_id": "s-1",
    "session_start": "2026-11-01T08:00:00.000Z",
    "session_end": "2026-11-01T08:10:00.000Z",
    "duration_seconds": 600.0,
    "event_count": 6,
    "page_views": 1,
    "product_views": 2,
    "add_to_cart_count": 1,
    "remove_from_cart_count": 0,
    "checkout_count": 1,
    "purchase_count": 1,
    "total_revenue": 397.47,
    "device_type": "mobile",
    "geo_region": "eu-west",
    "primary_category": "electronics",
    "converted": True,
    "cart_abandoned": False,
    "pane_timing": "ON_TIME",
    "pane_index": 0,
}
REVENUE = {
    "window_start": "2026-11-01T08:05:00.000Z",
    "window_end": "2026-11-01T08:06:00.000Z",
    "gmv": 1234.5,
    "order_count": 3,
    "units": 7,
    "avg_order_value": 411.5,
    "unique_users": 3,
    "first_time_orders": 1,
    "cancelled_gmv": 0,
    "pane_index": 1,
}
REVENUE_CATEGORY = {
    "window_start": "2026-11-01T08:05:00.000Z",
    "window_end": "2026-11-01T08:06:00.000Z",
    "region": "eu-west",
    "category": "books",
    "gmv": 12.5,
    "units": 1,
    "order_count": 1,
    "pane_index": 0,
}
DEAD_LETTER = {
    "pipeline": "sessions",
    "step": "ParseClickstream",
    "reason": "invalid_json",
    "error": "<message>: invalid JSON",
    "source": "file://x",
    "payload": "e30=",
    "payload_encoding": "base64",
    "event_id": None,
    "event_time": None,
    "received_at": "2026-11-01T08:06:00.000Z",
}
CDC_CHANGE = {
    "source_table": "products",
    "op": "u",
    "primary_key": '{"id":7}',
    "lsn": 28528464,
    "tx_id": 912,
    "source_ts": "2026-11-23T10:00:00.500Z",
    "snapshot": False,
    "before": '{"id":7,"price":"40.00"}',
    "after": '{"id":7,"price":"30.00"}',
    "ingested_at": "2026-11-23T10:00:00.700Z",
}
PRICE_CHANGE = {
    "product_id": 7,
    "sku": "P000007",
    "category": "home_garden",
    "old_price": 40.0,
    "new_price": 30.0,
    "change_pct": -25.0,
    "original_price": 40.0,
    "changed_at": "2026-11-23T10:00:00.500Z",
    "lsn": 28528464,
}
STOCK_ALERT = {
    "product_id": 7,
    "sku": "P000007",
    "alert_type": "LOW_STOCK",
    "stock_quantity": 4,
    "previous_quantity": 12,
    "threshold": 10,
    "changed_at": "2026-11-23T10:00:00.500Z",
    "lsn": 28528464,
}
ORDER_TRANSITION = {
    "order_id": 3,
    "order_number": "SO-00000003",
    "customer_id": 11,
    "from_status": "DELIVERED",
    "to_status": "PENDING",
    "is_valid": False,
    "anomaly": "DELIVERED -> PENDING is not allowed (only REFUNDED)",
    "total_amount": 99.9,
    "changed_at": "2026-11-23T10:00:00.500Z",
    "lsn": 28528464,
}
SAMPLES: dict[str, dict[str, Any]] = {
    "clickstream_event": CLICK,
    "order_event": ORDER,
    "fraud_alert": ALERT,
    "session_aggregate": SESSION,
    "revenue_per_minute": REVENUE,
    "revenue_by_category_region": REVENUE_CATEGORY,
    "dead_letter": DEAD_LETTER,
    "cdc_change": CDC_CHANGE,
    "price_change": PRICE_CHANGE,
    "stock_alert": STOCK_ALERT,
    "order_status_transition": ORDER_TRANSITION,
}


def sample(subject: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of the subject's sample with top-level fields changed."""
    record = copy.deepcopy(SAMPLES[subject])
    record.update(changes)
    return record


#: A [fraud] section far from the defaults, for checking the simulator and the rules agree anyway.
UNUSUAL_RULES = """
[fraud]
rapid_orders_count = 4
rapid_orders_window = "45m"         # longer than the 30-minute session gap
high_value_first_order = "1500.00"
max_travel_speed_kmh = 400.0
min_travel_distance_km = 8000.0
card_testing_failed_payments = 2
card_testing_distinct_cards = 2     # a normal retry with a second card would match this
card_testing_window = "20m"
"""
