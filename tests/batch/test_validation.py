"""The batch's Spark checks hold each line to the same verdict as the Python validator the pipelines
use: on every kind of malformed message the simulator makes, and on hand-written edge cases."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from batch.validation import check_json_lines
from streamforge.schemas import InvalidEvent, get_schema
from tests.support.samples import ORDER, sample

NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)
SKEW = timedelta(minutes=5)
SUBJECTS = {"orders": "order_event", "clickstream": "clickstream_event"}


def _python_verdicts(stream: str, lines: list[bytes]) -> list[bool]:
    schema = get_schema(SUBJECTS[stream])
    verdicts = []
    for line in lines:
        try:
            schema.from_json(line)
            verdicts.append(True)
        except InvalidEvent:
            verdicts.append(False)
    return verdicts


def _spark_verdicts(spark, stream: str, lines: list[bytes], tmp_path: Path) -> tuple[list[bool], dict[bytes, str]]:
    """Per line (read as a file, as the job reads them): valid, and the reasons of the others."""
    path = tmp_path / f"{stream}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    checked = check_json_lines(stream, spark.read.text(str(path)), NOW, SKEW)
    from pyspark.sql import functions as F

    rows = checked.rows.select(F.col("_payload").cast("binary").alias("line"), "_reason").collect()
    reasons = {bytes(r["line"]): r["_reason"] for r in rows}
    return [reasons[line] is None for line in lines], {k: v for k, v in reasons.items() if v is not None}


@pytest.mark.slow
@pytest.mark.parametrize("stream, file", [("orders", "orders.jsonl"), ("clickstream", "clickstream.jsonl")])
def test_the_simulators_faults_get_the_python_verdict(spark, night_run, tmp_path, stream, file) -> None:
    lines = (night_run / file).read_bytes().splitlines()
    expected = _python_verdicts(stream, lines)
    actual, reasons = _spark_verdicts(spark, stream, lines, tmp_path)
    disagreements = [(line[:120], reasons.get(line)) for line, a, e in zip(lines, actual, expected) if a != e]
    assert not disagreements, disagreements[:5]
    assert expected.count(False) > 15  # the run holds malformed messages of every kind


def _line(record) -> bytes:
    return json.dumps(record).encode()


EDGE_ORDERS = [
    sample("order_event"),
    sample("order_event", subtotal="412.48", total_amount="397.47"),  # decimal strings
    sample("order_event", total_amount=397.470),  # a trailing zero is fine
    sample("order_event", total_amount=397.471),  # three places
    sample("order_event", total_amount="lots"),
    sample("order_event", total_amount=-1),
    sample("order_event", currency="eur"),  # pattern
    sample("order_event", ip_country="GBR"),
    sample("order_event", status="LOST"),
    sample("order_event", items=[]),  # minItems
    sample("order_event", items=[{**ORDER["items"][0], "quantity": 0}]),
    sample("order_event", items=[{**ORDER["items"][0], "category": ""}]),  # minLength inside an item
    sample("order_event", items=[{k: v for k, v in ORDER["items"][0].items() if k != "unit_price"}]),
    sample("order_event", subtotal=1.0),  # lines do not add up
    sample("order_event", discount=500.0),  # discount above subtotal
    sample("order_event", card_fingerprint=None),  # card without fingerprint
    sample("order_event", payment_method="paypal", card_fingerprint=None),  # fine without
    sample("order_event", event_time="2026-11-01"),  # no time
    sample("order_event", event_time="2026-11-01T08:05:00+02:00"),  # an offset
    sample("order_event", event_time="2026-02-30T08:05:00Z"),  # no such day
    sample("order_event", event_time=1762000000),
    sample("order_event", is_first_order="yes"),
    sample("order_event", order_id="x" * 65),  # maxLength
    sample("order_event", session_id=None),  # nullable
    {k: v for k, v in ORDER.items() if k != "user_id"},
    sample("order_event", shipping_region="\u202eus-east"),  # a bidi override
    sample("order_event", shipping_region="mars-north"),  # not a region
    sample("order_event", currency="XYZ"),  # not ISO 4217
    sample("order_event", items=[{**ORDER["items"][0], "category": "Electronics"}]),  # not a category
    sample("order_event", items=[{**ORDER["items"][0], "product_id": "P\u0000"}]),  # NUL inside an item
    sample(  # a C1 control in an item
        "order_event", items=[{**ORDER["items"][0], "product_id": "P\u0085"}, *ORDER["items"][1:]]
    ),
]
EDGE_CLICKS = [
    sample("clickstream_event"),
    sample("clickstream_event", event_type="page_view", product_id=None, category=None, price=None, quantity=None),
    sample("clickstream_event", event_type="purchase", order_id=None),  # purchase needs an order_id
    sample("clickstream_event", event_type="product_view", price=None),
    sample("clickstream_event", price=1e2),
    sample("clickstream_event", price=0.005),
    sample("clickstream_event", quantity=2.5),
    sample("clickstream_event", quantity=10001),
    sample("clickstream_event", device_type="fridge"),
    sample("clickstream_event", page_url="https://x/" + "p" * 2100),
    sample("clickstream_event", user_agent="é" * 300),  # 300 characters, 600 bytes
    sample("clickstream_event", user_agent="é" * 513),
    sample("clickstream_event", geo_region="\u202e\u0000\ud7ffus-east"),
    sample("clickstream_event", user_id="U\u200b1"),  # zero width
    sample("clickstream_event", page_url="https://x/\n"),
    sample("clickstream_event", geo_region="mars-north"),
    sample("clickstream_event", category="Electronics"),
    sample("clickstream_event", user_agent="Mozilla/5.0 (é) \u2066"),  # an isolate among other non-ASCII
]


@pytest.mark.slow
@pytest.mark.parametrize("stream, records", [("orders", EDGE_ORDERS), ("clickstream", EDGE_CLICKS)])
def test_edge_cases_get_the_python_verdict(spark, tmp_path, stream, records) -> None:
    lines = [_line(r) for r in records] + [b"", b"[1, 2]", b"null", b'{"event_id": "x"', b'{"user_id": "\xc3\x28"}']
    expected = _python_verdicts(stream, lines)
    actual, reasons = _spark_verdicts(spark, stream, lines, tmp_path)
    assert actual == expected, [
        (line[:100], reasons.get(line)) for line, a, e in zip(lines, actual, expected) if a != e
    ]
    line, reason = (
        (_line(records[3]), "total_amount: has more than 2 decimal places")
        if stream == "orders"
        else (_line(records[2]), "order_id: required for event_type purchase")
    )
    assert reasons[line] == reason
    hidden = (
        (records[-1], "items[].product_id: contains a control, bidi or zero-width character")
        if stream == "orders"
        else (records[-1], "user_agent: contains a control, bidi or zero-width character")
    )
    assert reasons[_line(hidden[0])] == hidden[1]


@pytest.mark.slow
def test_events_from_the_future_are_refused_like_the_pipelines_do(spark, tmp_path) -> None:
    soon = (NOW + timedelta(minutes=4)).isoformat().replace("+00:00", "Z")
    later = (NOW + timedelta(minutes=6)).isoformat().replace("+00:00", "Z")
    lines = [
        _line(sample("clickstream_event", event_id="soon", event_time=soon)),
        _line(sample("clickstream_event", event_id="later", event_time=later)),
    ]
    actual, reasons = _spark_verdicts(spark, "clickstream", lines, tmp_path)
    assert actual == [True, False] and "ahead of the clock (future)" in reasons[lines[1]]


@pytest.mark.slow
def test_impossible_times_are_refused_like_the_pipelines_do(spark, tmp_path) -> None:
    lines = [
        _line(sample("clickstream_event", event_id="epoch", event_time="1970-01-01T00:00:00Z")),
        _line(sample("clickstream_event", event_id="y2000", event_time="2000-01-01T00:00:00Z")),
    ]
    path = tmp_path / "clickstream.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    floor = datetime(2000, 1, 1, tzinfo=timezone.utc)
    checked = check_json_lines("clickstream", spark.read.text(str(path)), NOW, SKEW, floor)
    reasons = [row["_reason"] for row in checked.rows.orderBy("event_id").collect()]
    assert reasons == ["event_time: before min_event_time 2000-01-01T00:00:00Z (too_old)", None]
