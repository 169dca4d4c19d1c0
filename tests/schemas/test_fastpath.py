"""The generated fast path (schemas/fastpath.py) never changes a validation result: whenever
it answers, its record equals the reference converters' output, value for value and type for
type; when it does not, the converters decide."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamforge.schemas import get_schema
from streamforge.schemas.validation import INVALID
from tests.support.samples import SAMPLES
from tests.support.strategies import SUBJECTS, json_values, mutated_events


def reference(subject: str, document: Any) -> Any:
    errors: list[Any] = []
    record = get_schema(subject)._convert(document, "", errors)
    return None if errors or record is INVALID else record


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (Decimal('1.50') and 1.5 are equal but differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.tzinfo is timezone.utc and b.tzinfo is timezone.utc
    return a == b


def check(subject: str, document: Any) -> None:
    fast = get_schema(subject)._fast(document)
    if fast is not None:
        assert same(fast, reference(subject, document)), (subject, document)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_samples_take_the_fast_path(subject: str) -> None:
    document = orjson.loads(orjson.dumps(SAMPLES[subject]))
    fast = get_schema(subject)._fast(document)
    assert fast is not None and same(fast, reference(subject, document))


def test_simulated_traffic_takes_the_fast_path(default_run: Path) -> None:
    for subject, name in (("clickstream_event", "clickstream.jsonl"), ("order_event", "orders.jsonl")):
        lines = (default_run / name).read_bytes().splitlines()[:3000]
        for line in lines:
            document = orjson.loads(line)
            fast = get_schema(subject)._fast(document)
            assert fast is not None and same(fast, reference(subject, document))


@pytest.mark.parametrize(
    "value,fast",
    [
        ("2026-11-01T08:00:00.123Z", True),
        ("2026-11-01T08:00:00Z", False),  # valid, but not the canonical form: the converter takes it
        ("2026-11-01T08:00:00.123+02:00", False),
        ("2026-13-01T08:00:00.123Z", False),  # invalid month
        ("2026-11-01T24:00:00.000Z", False),
        ("２026-11-01T08:00:00.123Z", False),  # a full-width digit
        ("2026-11-01t08:00:00.123Z", False),
    ],
)
def test_timestamps(value: str, fast: bool) -> None:
    document = {**orjson.loads(orjson.dumps(SAMPLES["clickstream_event"])), "event_time": value}
    result = get_schema("clickstream_event")._fast(document)
    assert (result is not None) == fast
    check("clickstream_event", document)


@pytest.mark.parametrize("price", [0.0, -0.0, 0.1, 19.99, 19.999, 1e13, -1.0, 5, "19.99", True, float("inf")])
def test_decimals(price: Any) -> None:
    document = {**orjson.loads(orjson.dumps(SAMPLES["clickstream_event"])), "price": price}
    for _ in range(2):  # the second time from the fast path's cache
        check("clickstream_event", document)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutated_events(
        json_form=True,
        least=0,
        values=json_values
        | st.sampled_from(["2026-11-01T08:00:00.000Z", 0.5, 10_000, 10_001, -1, "é", "x" * 65, "USD", "GB", "usd"]),
    )
)
def test_fast_path_agrees_with_the_converters(case: tuple[str, Any]) -> None:
    check(*case)
