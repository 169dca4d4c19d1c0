"""Cross-field rules: what a schema cannot say field by field.

Each rule takes a record that already passed type validation (Python form) and returns the
problems it finds. Rules are keyed by schema subject and apply to every version of it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Mapping

from streamforge.schemas.errors import MISSING, FieldError
from streamforge.vocabulary import CATEGORIES, CURRENCIES, REGION_CODES, hidden_character

__all__ = ["CLICKSTREAM_REQUIRED", "RULES", "Rule"]

Rule = Callable[[Mapping[str, Any]], list[FieldError]]

# Fields a clickstream event of a given type must carry (the daily batch checks the same table in Spark).
CLICKSTREAM_REQUIRED: dict[str, tuple[str, ...]] = {
    "page_view": ("page_url",),
    "product_view": ("product_id", "category", "price"),
    "add_to_cart": ("product_id", "category", "price", "quantity"),
    "remove_from_cart": ("product_id", "category", "price", "quantity"),
    "checkout_start": ("price", "quantity"),
    "purchase": ("order_id", "price", "quantity"),
}


def clickstream_fields_for_type(record: Mapping[str, Any]) -> list[FieldError]:
    needed = CLICKSTREAM_REQUIRED.get(record["event_type"], ())
    return [
        FieldError(name, record.get(name, MISSING), f"required for event_type {record['event_type']}")
        for name in needed
        if record.get(name) is None
    ]


def order_amounts_add_up(record: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    lines = Decimal(0)
    for item in record["items"]:
        lines += item["unit_price"] * item["quantity"]
    if record["subtotal"] != lines:
        errors.append(FieldError("subtotal", record["subtotal"], f"must equal the sum of the item lines ({lines})"))
    if record["discount"] > record["subtotal"]:
        errors.append(FieldError("discount", record["discount"], "must not exceed the subtotal"))
    expected = record["subtotal"] - record["discount"] + record["shipping"]
    if record["total_amount"] != expected:
        errors.append(
            FieldError("total_amount", record["total_amount"], f"must equal subtotal - discount + shipping ({expected})")
        )
    return errors


def card_payments_have_fingerprint(record: Mapping[str, Any]) -> list[FieldError]:
    if record["payment_method"] == "card" and record.get("card_fingerprint") is None:
        return [FieldError("card_fingerprint", record.get("card_fingerprint"), "required when payment_method is card")]
    return []


def ends_after_start(start: str, end: str) -> Rule:
    def rule(record: Mapping[str, Any]) -> list[FieldError]:
        if record[end] < record[start]:
            return [FieldError(end, record[end], f"must not be before {start}")]
        return []

    rule.__name__ = f"{end}_not_before_{start}"
    return rule


def no_hidden_characters(record: Mapping[str, Any], path: str = "") -> list[FieldError]:
    """Every text field of an input event, nested ones too: no control, bidi or zero-width
    character (vocabulary.py), which would make a value look like another or break a report."""
    errors = []
    for name, value in record.items():
        where = f"{path}{name}"
        if type(value) is str:
            found = hidden_character(value)
            if found is not None:
                errors.append(FieldError(where, value, f"contains {found}: control, bidi and zero-width "
                                                       "characters are not allowed"))
        elif type(value) is list:
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    errors.extend(no_hidden_characters(item, f"{where}[{index}]."))
    return errors


def _known(values: Any, what: str) -> Callable[[Any, str], list[FieldError]]:
    listed = ", ".join(sorted(values)) if len(values) <= 20 else f"{len(values)} codes"

    def check(value: Any, where: str) -> list[FieldError]:
        if value is None or value in values:
            return []
        return [FieldError(where, value, f"not a known {what} ({listed}; streamforge/vocabulary.py)")]

    return check


_REGION, _CATEGORY = _known(REGION_CODES, "region"), _known(CATEGORIES, "category")
_CURRENCY = _known(CURRENCIES, "ISO 4217 currency")


def clickstream_vocabulary(record: Mapping[str, Any]) -> list[FieldError]:
    return _REGION(record["geo_region"], "geo_region") + _CATEGORY(record.get("category"), "category")


def order_vocabulary(record: Mapping[str, Any]) -> list[FieldError]:
    errors = _REGION(record["shipping_region"], "shipping_region") + _CURRENCY(record["currency"], "currency")
    for index, item in enumerate(record["items"]):
        errors += _CATEGORY(item["category"], f"items[{index}].category")
    return errors


RULES: dict[str, tuple[Rule, ...]] = {
    "clickstream_event": (clickstream_fields_for_type, no_hidden_characters, clickstream_vocabulary),
    "order_event": (order_amounts_add_up, card_payments_have_fingerprint, no_hidden_characters, order_vocabulary),
    "session_aggregate": (ends_after_start("session_start", "session_end"),),
    "revenue_per_minute": (ends_after_start("window_start", "window_end"),),
    "revenue_by_category_region": (ends_after_start("window_start", "window_end"),),
}
