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
            FieldError(
                "total_amount", record["total_amount"], f"must equal subtotal - discount + shipping ({expected})"
            )
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


def no_hidden_characters(record: Mapping[str, Any]) -> list[FieldError]:
    """Every text field of an input event, nested ones too: no control, bidi or zero-width
    character (vocabulary.py), which would make a value look like another or break a report."""
    texts = []  # one test of all the text first: most events are clean, and a call per field costs
    for value in record.values():
        if type(value) is str:
            texts.append(value)
        elif type(value) is list:
            for item in value:
                if isinstance(item, Mapping):
                    texts.extend(text for text in item.values() if type(text) is str)
    if hidden_character("".join(texts)) is None:
        return []
    return _hidden_fields(record, "")


def _hidden_fields(record: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    for name, value in record.items():
        where = f"{path}{name}"
        if type(value) is str:
            found = hidden_character(value)
            if found is not None:
                errors.append(
                    FieldError(
                        where, value, f"contains {found}: control, bidi and zero-width characters are not allowed"
                    )
                )
        elif type(value) is list:
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    errors.extend(_hidden_fields(item, f"{where}[{index}]."))
    return errors


_CATEGORY_SET = frozenset(CATEGORIES)


def _unknown(where: str, value: Any, known: Any, what: str) -> FieldError:
    listed = ", ".join(sorted(known)) if len(known) <= 20 else f"{len(known)} codes"
    return FieldError(where, value, f"not a known {what} ({listed}; streamforge/vocabulary.py)")


def clickstream_vocabulary(record: Mapping[str, Any]) -> list[FieldError]:
    region, category = record["geo_region"], record.get("category")
    errors = []
    if region not in REGION_CODES:
        errors.append(_unknown("geo_region", region, REGION_CODES, "region"))
    if category is not None and category not in _CATEGORY_SET:
        errors.append(_unknown("category", category, CATEGORIES, "category"))
    return errors


def order_vocabulary(record: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    if record["shipping_region"] not in REGION_CODES:
        errors.append(_unknown("shipping_region", record["shipping_region"], REGION_CODES, "region"))
    if record["currency"] not in CURRENCIES:
        errors.append(_unknown("currency", record["currency"], CURRENCIES, "ISO 4217 currency"))
    for index, item in enumerate(record["items"]):
        if item["category"] not in _CATEGORY_SET:
            errors.append(_unknown(f"items[{index}].category", item["category"], CATEGORIES, "category"))
    return errors


RULES: dict[str, tuple[Rule, ...]] = {
    "clickstream_event": (clickstream_fields_for_type, no_hidden_characters, clickstream_vocabulary),
    "order_event": (order_amounts_add_up, card_payments_have_fingerprint, no_hidden_characters, order_vocabulary),
    "session_aggregate": (ends_after_start("session_start", "session_end"),),
    "revenue_per_minute": (ends_after_start("window_start", "window_end"),),
    "revenue_by_category_region": (ends_after_start("window_start", "window_end"),),
}
