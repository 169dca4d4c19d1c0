"""A seeded mutation corpus: valid simulator lines, and what a fuzzer or a hostile client
makes of them. Each mutated line says how it was made, so a failure names its kind."""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Iterator

#: Hidden characters a value may be given: controls, bidi, zero-width, line separators.
HIDDEN = [
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\u202e",
    "\u202d",
    "\u2066",
    "\u200b",
    "\u200f",
    "\u2028",
    "\ufeff",
    "\u061c",
]
#: Times no real event has.
IMPOSSIBLE_TIMES = [
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00.000Z",
    "1999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "1900-01-01T00:00:00+00:00",
]
#: Values outside the vocabulary for fields that have one.
UNKNOWN = {
    "geo_region": ["mars-north", "US-EAST", "us-east ", ""],
    "shipping_region": ["atlantis", "EU-WEST"],
    "category": ["Electronics", "weapons", "books "],
    "currency": ["XYZ", "usd", "BTC"],
}
WRONG_TYPES = [None, 0, -1, 1e308, True, [], {}, "", "x" * 70, 2**64]


def _fields(record: dict[str, Any]) -> list[str]:
    return [name for name in record if name != "items"]


def _string_fields(record: dict[str, Any]) -> list[str]:
    return [name for name, value in record.items() if isinstance(value, str)]


Mutation = Callable[[random.Random, dict[str, Any], bytes], bytes]


def _dump(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _hidden(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    names = _string_fields(record)
    if record.get("items") and rng.random() < 0.3:
        item = rng.choice(record["items"])
        name = rng.choice(["category", "product_id"])
        item[name] = rng.choice(HIDDEN) + str(item.get(name))
        return _dump(record)
    name = rng.choice(names)
    value = record[name]
    at = rng.randrange(len(value) + 1)
    record[name] = value[:at] + rng.choice(HIDDEN) + value[at:]
    return json.dumps(record, ensure_ascii=rng.random() < 0.5).encode()


def _old_time(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    record["event_time"] = rng.choice(IMPOSSIBLE_TIMES)
    return _dump(record)


def _unknown_value(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    names = [name for name in UNKNOWN if name in record and record[name] is not None]
    if record.get("items") and (not names or rng.random() < 0.3):
        rng.choice(record["items"])["category"] = rng.choice(UNKNOWN["category"])
        return _dump(record)
    name = rng.choice(names)
    record[name] = rng.choice(UNKNOWN[name])
    return _dump(record)


def _wrong_type(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    record[rng.choice(_fields(record))] = rng.choice(WRONG_TYPES)
    return _dump(record)


def _missing(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    del record[rng.choice(_fields(record))]
    return _dump(record)


def _huge(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    record[rng.choice(_string_fields(record))] = "A" * 200_000
    return _dump(record)


def _truncated(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    return line[: rng.randrange(1, len(line))]


def _junk(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    return rng.randbytes(rng.randrange(1, 300)).replace(b"\n", b" ")


def _flipped(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data).replace(b"\n", b" ")


def _not_an_object(rng: random.Random, record: dict[str, Any], line: bytes) -> bytes:
    return rng.choice(
        [
            b"[]",
            b"null",
            b"1",
            b'"x"',
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 200 + b"1" + b"}" * 200,
            b'{"event_time": NaN}',
            b'{"price": 1e400}',
        ]
    )


MUTATIONS: dict[str, Mutation] = {
    "hidden_character": _hidden,
    "impossible_time": _old_time,
    "unknown_value": _unknown_value,
    "wrong_type": _wrong_type,
    "missing_field": _missing,
    "huge_string": _huge,
    "truncated": _truncated,
    "binary_junk": _junk,
    "flipped_bytes": _flipped,
    "not_an_object": _not_an_object,
}


def mutated(lines: list[bytes], count: int, seed: int, fraction: float = 0.5) -> Iterator[tuple[str, bytes]]:
    """``count`` lines drawn from ``lines`` with replacement (so valid lines also come again, as
    redeliveries do): about ``fraction`` of them mutated, as (kind, line); the others ("valid", line)."""
    rng = random.Random(seed)
    kinds = list(MUTATIONS)
    for _ in range(count):
        line = rng.choice(lines)
        if rng.random() >= fraction:
            yield "valid", line
            continue
        kind = kinds[rng.randrange(len(kinds))]
        yield kind, MUTATIONS[kind](rng, json.loads(line), line)
