"""Property tests: no input makes decoding raise anything but InvalidEvent, and whatever
validates can be written as Avro and read back unchanged."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamforge.schemas import InvalidEvent, get_schema, registry
from tests.support.samples import SAMPLES
from tests.support.strategies import SUBJECTS, json_values, mutated_events

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_invalid(decode: Any, *args: Any) -> Any:
    try:
        return decode(*args)
    except InvalidEvent as exc:
        assert exc.errors, "an InvalidEvent always lists its problems"
        assert all(e.reason for e in exc.errors)
        return None


@FAST
@given(st.sampled_from(SUBJECTS), st.binary(max_size=300))
def test_random_bytes_never_raise_unexpectedly(subject: str, data: bytes) -> None:
    schema = get_schema(subject)
    _decode_or_invalid(schema.from_json, data)
    _decode_or_invalid(schema.from_avro, data)
    _decode_or_invalid(registry().from_confluent, data)
    _decode_or_invalid(registry().from_confluent, b"\x00" + schema.schema_id.to_bytes(4, "big") + data, subject)


@FAST
@given(mutated_events())
def test_mutated_events_validate_or_fail_precisely(case: tuple[str, Any]) -> None:
    subject, record = case
    schema = get_schema(subject)
    try:
        payload = orjson.dumps(record)
    except (TypeError, orjson.JSONEncodeError):  # e.g. NaN is not JSON; check the Python path instead
        payload = None
    decoded = _decode_or_invalid(schema.validate, record)
    if payload is not None:
        from_bytes = _decode_or_invalid(schema.from_json, payload)
        assert (decoded is None) == (from_bytes is None)
    if decoded is not None:
        # Anything the validator accepts, fastavro can write and read back unchanged.
        assert schema.from_avro(schema.to_avro(decoded, validate=False)) == decoded
        assert schema.from_json(schema.to_json(decoded)) == decoded


@FAST
@given(st.sampled_from(SUBJECTS), json_values)
def test_arbitrary_json_documents(subject: str, document: Any) -> None:
    _decode_or_invalid(get_schema(subject).validate, document)


@FAST
@given(st.sampled_from(SUBJECTS), st.data())
def test_corrupted_avro_never_raises_unexpectedly(subject: str, data: st.DataObject) -> None:
    schema = get_schema(subject)
    payload = bytearray(schema.to_confluent(SAMPLES[subject]))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(payload) - 1))
        payload[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    _decode_or_invalid(registry().from_confluent, bytes(payload))
