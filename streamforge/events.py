"""Typed names for the enum values code refers to, checked against the schemas at import.

The .avsc files are the source of truth; these classes only give code a typo-proof way to
name their symbols, and importing this module fails if the two ever drift apart.
"""

from __future__ import annotations

from enum import StrEnum

from streamforge.schemas import get_schema

__all__ = ["DeviceType", "EventType", "FraudPattern", "OrderStatus", "PaymentMethod"]


class EventType(StrEnum):
    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT_START = "checkout_start"
    PURCHASE = "purchase"


class DeviceType(StrEnum):
    DESKTOP = "desktop"
    MOBILE = "mobile"
    TABLET = "tablet"


class OrderStatus(StrEnum):
    CREATED = "CREATED"
    PAID = "PAID"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    CANCELLED = "CANCELLED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"


class PaymentMethod(StrEnum):
    CARD = "card"
    PAYPAL = "paypal"
    APPLE_PAY = "apple_pay"
    GOOGLE_PAY = "google_pay"
    GIFT_CARD = "gift_card"


class FraudPattern(StrEnum):
    RAPID_ORDERS = "RAPID_ORDERS"
    HIGH_VALUE_FIRST_ORDER = "HIGH_VALUE_FIRST_ORDER"
    LOCATION_ANOMALY = "LOCATION_ANOMALY"
    CARD_TESTING = "CARD_TESTING"


def _check(enum: type[StrEnum], subject: str, field: str) -> None:
    declared = get_schema(subject).enum_symbols(field)
    if tuple(enum) != declared:
        raise ImportError(f"{enum.__name__} {tuple(enum)} does not match {subject}.{field} {declared}")


_check(EventType, "clickstream_event", "event_type")
_check(DeviceType, "clickstream_event", "device_type")
_check(OrderStatus, "order_event", "status")
_check(PaymentMethod, "order_event", "payment_method")
_check(FraudPattern, "fraud_alert", "alert_type")
