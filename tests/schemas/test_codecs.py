"""Round trips through JSON, Avro binary and the Confluent wire format, checked independently."""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime, timezone
from decimal import Decimal

import fastavro
import orjson
import pytest

from streamforge.schemas import SCHEMA_DIR, InvalidEvent, get_schema, registry
from tests.support.samples import SAMPLES, sample

SUBJECTS = sorted(SAMPLES)


def test_every_shipped_schema_has_a_sample() -> None:
    assert set(registry().subjects()) == set(SAMPLES)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_json_round_trip(subject: str) -> None:
    schema = get_schema(subject)
    record = schema.validate(SAMPLES[subject])
    assert schema.from_json(schema.to_json(record)) == record
    # The JSON form is what producers write: the same values as the hand-written sample.
    assert orjson.loads(schema.to_json(record)) == json.loads(json.dumps(SAMPLES[subject]))


@pytest.mark.parametrize("subject", SUBJECTS)
def test_avro_round_trip_and_standard_encoding(subject: str) -> None:
    schema = get_schema(subject)
    record = schema.validate(SAMPLES[subject])
    payload = schema.to_avro(record)
    assert schema.from_avro(payload) == record
    # Independent reader: fastavro with the .avsc file parsed afresh reads the same record.
    raw = json.loads((SCHEMA_DIR / f"{subject}.v{schema.version}.avsc").read_text())
    assert fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(raw)) == record


@pytest.mark.parametrize("subject", SUBJECTS)
def test_confluent_wire_format(subject: str) -> None:
    schema = get_schema(subject)
    record = schema.validate(SAMPLES[subject])
    message = schema.to_confluent(record)
    magic, schema_id = struct.unpack(">bI", message[:5])
    assert (magic, schema_id) == (0, schema.schema_id)
    assert message[5:] == schema.to_avro(record)
    assert registry().from_confluent(message) == record
    assert registry().from_confluent(message, subject) == record


def test_python_form_uses_aware_datetimes_and_decimals() -> None:
    record = get_schema("order_event").validate(SAMPLES["order_event"])
    assert record["event_time"] == datetime(2026, 11, 1, 8, 5, tzinfo=timezone.utc)
    assert record["total_amount"] == Decimal("397.47")
    assert record["items"][1]["unit_price"] == Decimal("12.50")


def test_timestamps_with_offsets_normalise_to_utc_milliseconds() -> None:
    schema = get_schema("clickstream_event")
    record = schema.validate(sample("clickstream_event", event_time="2026-11-01T10:00:00.123456+02:00"))
    assert record["event_time"] == datetime(2026, 11, 1, 8, 0, 0, 123000, tzinfo=timezone.utc)
    assert orjson.loads(schema.to_json(record))["event_time"] == "2026-11-01T08:00:00.123Z"


def test_confluent_message_of_another_subject_is_rejected_with_the_reason() -> None:
    alert = get_schema("fraud_alert")
    message = alert.to_confluent(SAMPLES["fraud_alert"])
    with pytest.raises(InvalidEvent) as caught:
        registry().from_confluent(message, "order_event")
    assert caught.value.errors[0].path == "schema_id"
    assert "belongs to fraud_alert v1" in caught.value.errors[0].reason


@pytest.mark.parametrize(
    "message, reason",
    [
        (b"\x00\x00", "shorter than the 5-byte Confluent header"),
        (b"\x01\x00\x00\x00\x01rest", "magic byte must be 0"),
        (b"\x00\x7f\xff\xff\xfe\x02", "no schema has id 2147483646"),
    ],
)
def test_confluent_header_errors(message: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        registry().from_confluent(message)
    assert reason in str(caught.value)
    assert caught.value.kind == "invalid_avro"


def test_trailing_bytes_after_an_avro_record_are_an_error() -> None:
    schema = get_schema("clickstream_event")
    with pytest.raises(InvalidEvent, match="2 trailing byte"):
        schema.from_avro(schema.to_avro(SAMPLES["clickstream_event"]) + b"\x02\x00")


def test_schema_ids_are_stable() -> None:
    """Ids are derived from subject and version; changing the derivation breaks every Kafka topic."""
    assert get_schema("clickstream_event").schema_id == 425157096
    assert get_schema("order_event").schema_id == 326651857
