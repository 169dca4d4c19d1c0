"""Validation names the field, the value and the reason for each problem."""

from __future__ import annotations

import copy
from typing import Any, Callable

import orjson
import pytest

from streamforge.schemas import InvalidEvent, get_schema
from streamforge.schemas.errors import MISSING
from streamforge.schemas.versioned import MAX_MESSAGE_BYTES
from tests.support.samples import ORDER, sample


def _order(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    record = copy.deepcopy(ORDER)
    change(record)
    return record


def _errors(subject: str, record: Any) -> list[tuple[str, Any, str]]:
    with pytest.raises(InvalidEvent) as caught:
        get_schema(subject).validate(record)
    return [(e.path, e.value, e.reason) for e in caught.value.errors]


@pytest.mark.parametrize(
    "record, path, value, reason",
    [
        (sample("clickstream_event", user_id=None), "user_id", None, "must not be null"),
        (
            {k: v for k, v in sample("clickstream_event").items() if k != "event_time"},
            "event_time",
            MISSING,
            "missing required field",
        ),
        (sample("clickstream_event", quantity="two"), "quantity", "two", "expected an integer"),
        (sample("clickstream_event", quantity=0), "quantity", 0, "must be >= 1"),
        (sample("clickstream_event", quantity=2**40), "quantity", 2**40, "out of range for Avro int"),
        (sample("clickstream_event", event_type="hover"), "event_type", "hover", "not one of page_view, product_view"),
        (sample("clickstream_event", price=-1), "price", -1, "must be >= 0"),
        (sample("clickstream_event", price=1.234), "price", 1.234, "has more than 2 decimal places"),
        (sample("clickstream_event", price="1e5"), "price", "1e5", "not a decimal number"),
        (sample("clickstream_event", price=float("nan")), "price", float("nan"), "must be a finite number"),
        (
            sample("clickstream_event", event_time="2026-13-45T25:61:00Z"),
            "event_time",
            "2026-13-45T25:61:00Z",
            "not a valid date/time",
        ),
        (
            sample("clickstream_event", event_time="yesterday"),
            "event_time",
            "yesterday",
            "expected an RFC 3339 timestamp",
        ),
        (
            sample("clickstream_event", event_time="2026-11-01T08:00:00"),
            "event_time",
            "2026-11-01T08:00:00",
            "expected an RFC 3339",
        ),
        (
            sample("clickstream_event", event_time=1762000000),
            "event_time",
            1762000000,
            "expected an RFC 3339 timestamp string",
        ),
        (sample("clickstream_event", user_id=""), "user_id", "", "shorter than 1 characters"),
        (sample("clickstream_event", user_id="u" * 65), "user_id", "u" * 65, "longer than 64 characters"),
        (sample("clickstream_event", user_id="bad\ud800"), "user_id", "bad\ud800", "lone surrogate"),
        (sample("clickstream_event", product_id=None), "product_id", None, "required for event_type add_to_cart"),
        (sample("clickstream_event", event_type="purchase"), "order_id", None, "required for event_type purchase"),
        (
            sample("clickstream_event", device_type="watch"),
            "device_type",
            "watch",
            "not one of desktop, mobile, tablet",
        ),
        (_order(lambda o: o["items"][1].update(quantity=0)), "items[1].quantity", 0, "must be >= 1"),
        (_order(lambda o: o["items"][0].pop("category")), "items[0].category", MISSING, "missing required field"),
        (_order(lambda o: o.update(items=[])), "items", "<0 items>", "needs at least 1 item(s)"),
        (_order(lambda o: o.update(items={"a": 1})), "items", {"a": 1}, "expected an array"),
        (_order(lambda o: o.update(currency="euro")), "currency", "euro", "does not match ^[A-Z]{3}$"),
        (_order(lambda o: o.update(subtotal=1.0)), "subtotal", 1.0, "must equal the sum of the item lines (412.48)"),
        (
            _order(lambda o: o.update(total_amount=400.0)),
            "total_amount",
            400.0,
            "must equal subtotal - discount + shipping (397.47)",
        ),
        (
            _order(lambda o: o.update(card_fingerprint=None)),
            "card_fingerprint",
            None,
            "required when payment_method is card",
        ),
        (_order(lambda o: o.update(is_first_order="yes")), "is_first_order", "yes", "expected true or false"),
    ],
)
def test_precise_errors(record: dict[str, Any], path: str, value: Any, reason: str) -> None:
    subject = "order_event" if "items" in record else "clickstream_event"
    errors = _errors(subject, record)
    matching = [e for e in errors if e[0] == path and reason in e[2]]
    assert matching, errors
    if value == value:  # NaN is never equal to itself
        assert matching[0][1] == value


def test_unknown_fields_are_ignored_and_not_returned() -> None:
    record = get_schema("clickstream_event").validate(sample("clickstream_event", debug=True))
    assert "debug" not in record


def test_every_problem_is_reported_at_once() -> None:
    errors = _errors("clickstream_event", sample("clickstream_event", quantity="x", price=-5, device_type="tv"))
    assert {e[0] for e in errors} == {"quantity", "price", "device_type"}


def test_message_text_names_schema_field_value_and_reason() -> None:
    with pytest.raises(InvalidEvent) as caught:
        get_schema("order_event").from_json(orjson.dumps(_order(lambda o: o["items"][1].update(quantity=-3))))
    assert str(caught.value) == "order_event v1: items[1].quantity=-3: must be >= 1"
    assert caught.value.kind == "invalid_event"


@pytest.mark.parametrize(
    "payload, kind, reason",
    [
        (b"", "invalid_json", "invalid JSON"),
        (b'{"event_id": "x",', "invalid_json", "invalid JSON"),
        (b'\xc3\x28{"a": 1}', "invalid_json", "invalid JSON"),
        (b"[1, 2]", "invalid_event", "expected an object"),
        (b"null", "invalid_event", "must not be null"),
        (b"\x00" * (MAX_MESSAGE_BYTES + 1), "invalid_json", "message too large"),
    ],
)
def test_undecodable_json(payload: bytes, kind: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        get_schema("clickstream_event").from_json(payload)
    assert caught.value.kind == kind
    assert reason in str(caught.value)


def test_non_bytes_input_is_an_error_not_a_crash() -> None:
    with pytest.raises(InvalidEvent, match="expected bytes or str"):
        get_schema("clickstream_event").from_json(12345)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="expected bytes"):
        get_schema("clickstream_event").from_avro("text")  # type: ignore[arg-type]


def test_error_values_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidEvent) as caught:
        get_schema("clickstream_event").validate(sample("clickstream_event", page_url="x" * 5000))
    assert len(str(caught.value)) < 300
