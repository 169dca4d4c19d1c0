"""Fault injection: malformed messages and exact duplicates, for dead-letter and dedup tests.

Malformed messages are extra messages (the valid events stay intact), written right after
the event they were derived from, each of a named kind. Duplicates are the same event
(same event_id, same bytes) delivered again 1-30 s later, like a Pub/Sub redelivery.
Duplicates planned past the end of a run are not
delivered (and not counted). Both draw from their own random generator, so the valid stream does not change when faults
are turned on.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import orjson

__all__ = ["Faults", "JSON_FAULTS", "BINARY_FAULTS"]

Mutation = Callable[[random.Random, str, dict[str, Any]], dict[str, Any] | bytes]


def _truncated(rng: random.Random, _stream: str, event: dict[str, Any]) -> bytes:
    payload = orjson.dumps(event)
    return payload[: rng.randrange(1, len(payload) - 1)]


def _invalid_utf8(rng: random.Random, _stream: str, event: dict[str, Any]) -> bytes:
    payload = orjson.dumps(event)
    cut = payload.index(b'"user_id":"') + len(b'"user_id":"')
    return payload[:cut] + b"\xc3\x28\xff" + payload[cut:]


def _not_an_object(rng: random.Random, _stream: str, event: dict[str, Any]) -> bytes:
    return orjson.dumps([event["event_id"], event["event_time"]])


def _missing_field(rng: random.Random, stream: str, event: dict[str, Any]) -> dict[str, Any]:
    required = ("user_id", "event_time", "event_type") if stream == "clickstream" else ("order_id", "status", "items")
    broken = dict(event)
    del broken[required[rng.randrange(len(required))]]
    return broken


def _override(clickstream: dict[str, Any], orders: dict[str, Any]) -> Mutation:
    """A mutation that sets these fields (by stream) to values the schema rejects."""

    def mutate(_rng: random.Random, stream: str, event: dict[str, Any]) -> dict[str, Any]:
        return {**event, **(clickstream if stream == "clickstream" else orders)}

    return mutate


_wrong_type = _override({"quantity": "two"}, {"total_amount": "lots"})
_unknown_enum = _override({"event_type": "hover"}, {"status": "LOST_IN_TRANSIT"})


def _bad_timestamp(rng: random.Random, _stream: str, event: dict[str, Any]) -> dict[str, Any]:
    broken = dict(event)
    broken["event_time"] = ("2026-13-45T25:61:00Z", "yesterday", 1762000000)[rng.randrange(3)]
    return broken


def _out_of_range(rng: random.Random, stream: str, event: dict[str, Any]) -> dict[str, Any]:
    broken = dict(event)
    if stream == "clickstream":
        broken["price"] = -abs(broken["price"] or 1.0)
    else:
        broken["items"] = [dict(broken["items"][0], quantity=0)] + list(broken["items"][1:])
    return broken


def _inconsistent(rng: random.Random, stream: str, event: dict[str, Any]) -> dict[str, Any]:
    broken = dict(event)
    if stream == "clickstream":
        broken["event_type"] = "add_to_cart"
        broken["product_id"] = None
    else:
        broken["total_amount"] = round(broken["total_amount"] + 10.0, 2)
    return broken


#: Malformed kinds for JSON messages.
JSON_FAULTS: dict[str, Mutation] = {
    "truncated_json": _truncated,
    "invalid_utf8": _invalid_utf8,
    "not_an_object": _not_an_object,
    "missing_field": _missing_field,
    "wrong_type": _wrong_type,
    "unknown_enum": _unknown_enum,
    "bad_timestamp": _bad_timestamp,
    "out_of_range": _out_of_range,
    "inconsistent_fields": _inconsistent,
}


def _bin_truncated(rng: random.Random, payload: bytes) -> bytes:
    return payload[: rng.randrange(1, len(payload) - 1)]


def _bin_trailing(rng: random.Random, payload: bytes) -> bytes:
    return payload + b"\x02\x00"


def _bin_garbage(rng: random.Random, payload: bytes) -> bytes:
    # Every byte has its high bit set, so the first Avro varint never ends: never valid by chance.
    return bytes(0x80 | rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))


def _bin_bad_magic(rng: random.Random, payload: bytes) -> bytes:
    return b"\x07" + payload[1:]


def _bin_unknown_id(rng: random.Random, payload: bytes) -> bytes:
    return b"\x00\x7f\xff\xff\xfe" + payload[5:]


#: Malformed kinds for Avro messages (plain binary and Confluent wire format).
BINARY_FAULTS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncated_avro": _bin_truncated,
    "trailing_bytes": _bin_trailing,
    "random_bytes": _bin_garbage,
}
_CONFLUENT_ONLY = {"bad_magic_byte": _bin_bad_magic, "unknown_schema_id": _bin_unknown_id}


class Faults:
    def __init__(self, sim: Any, malformed_fraction: float, duplicate_fraction: float, seed: int):
        self._sim = sim
        self._malformed = malformed_fraction
        self._duplicate = duplicate_fraction
        self._rng = random.Random(f"faults-{seed}")
        self.enabled = bool(malformed_fraction or duplicate_fraction)

    def after(self, stream: str, event: dict[str, Any]) -> None:
        """Called after each valid event is written."""
        if self._duplicate and self._rng.random() < self._duplicate:
            # At least a second later: a redelivery, never planned into the second being written.
            redelivery_ms = self._sim.now + int(self._rng.uniform(1_000, 30_000))
            self._sim.at(redelivery_ms, self._deliver_duplicate, (stream, event))
        if self._malformed and self._rng.random() < self._malformed:
            self._write_malformed(stream, event)

    def _deliver_duplicate(self, stream: str, event: dict[str, Any]) -> None:
        self._sim.sink.emit(stream, event)
        self._sim.stats.duplicates += 1
        self._sim.stats.messages += 1

    def _write_malformed(self, stream: str, event: dict[str, Any]) -> None:
        sink, rng = self._sim.sink, self._rng
        fresh_id = "bad-%016x" % rng.getrandbits(64)
        if sink.format == "json":
            kind = list(JSON_FAULTS)[rng.randrange(len(JSON_FAULTS))]
            broken = JSON_FAULTS[kind](rng, stream, dict(event, event_id=fresh_id))
            payload = broken if isinstance(broken, bytes) else orjson.dumps(broken)
        else:
            kinds = dict(BINARY_FAULTS, **(_CONFLUENT_ONLY if sink.format == "confluent" else {}))
            kinds["json_on_avro_topic"] = lambda _rng, _payload: orjson.dumps(dict(event, event_id=fresh_id))
            kind = list(kinds)[rng.randrange(len(kinds))]
            payload = kinds[kind](rng, sink.encode(stream, dict(event, event_id=fresh_id)))
        sink.emit_raw(stream, payload, key=event["user_id"], event_id=fresh_id, event_time=event["event_time"])
        self._sim.stats.malformed[kind] += 1
        self._sim.stats.messages += 1
