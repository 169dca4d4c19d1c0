"""Property tests: no input makes decoding raise anything but InvalidEvent, and whatever
validates can be written as Avro and read back unchanged."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamforge.schemas import InvalidEvent, get_schema, registry
from tests.support.samples import SAMPLES

SUBJECTS = sorted(SAMPLES)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40) | st.sampled_from(["", "2026-11-01T08:00:00Z", "page_view", "CREATED", "1.5", "-0"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a mutation can hit."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


@st.composite
def mutated_events(draw: st.DrawFn, json_form: bool = False, values: st.SearchStrategy = json_values,
                   least: int = 1) -> tuple[str, Any]:
    """A sample record with ``least``..3 mutations: fields deleted or replaced by ``values``
    (in its JSON form with ``json_form``, as decoding JSON gives it)."""
    subject = draw(st.sampled_from(SUBJECTS))
    record = orjson.loads(orjson.dumps(SAMPLES[subject])) if json_form else copy.deepcopy(SAMPLES[subject])
    for _ in range(draw(st.integers(least, 3))):
        paths = _paths(record)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = record
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return subject, record


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
