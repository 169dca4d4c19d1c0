"""Malformed messages and duplicates: counted, at the requested rates, and really bad or
really identical, so dead-letter handling and dedup downstream have something to catch."""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamforge.config import load_config
from streamforge.events import FraudPattern
from streamforge.schemas import InvalidEvent, get_schema, registry
from streamforge.simulator.engine import Settings
from streamforge.simulator.faults import BINARY_FAULTS, JSON_FAULTS
from streamforge.simulator.sinks import NullSink
from streamforge.simulator.traffic import simulate

SUBJECTS = {"clickstream.jsonl": "clickstream_event", "orders.jsonl": "order_event"}


def _classify(path: Path, subject: str) -> dict[str, list[Any]]:
    """Split a file into valid first deliveries, duplicates and malformed lines, by decoding."""
    schema = get_schema(subject)
    kinds: dict[str, list[Any]] = {"valid": [], "duplicate": [], "malformed": []}
    first: dict[str, tuple[int, bytes]] = {}
    lines = path.read_bytes().splitlines()
    for index, line in enumerate(lines):
        try:
            event = schema.from_json(line)
        except InvalidEvent as exc:
            kinds["malformed"].append(exc)
            continue
        if event["event_id"] in first:
            original_index, original = first[event["event_id"]]
            kinds["duplicate"].append((original_index, index, original == line))
        else:
            first[event["event_id"]] = (index, line)
            kinds["valid"].append((index, event["event_time"]))
    return kinds


@pytest.fixture(scope="module")
def classified(faulty_run: Path) -> dict[str, dict[str, list[Any]]]:
    return {name: _classify(faulty_run / name, subject) for name, subject in SUBJECTS.items()}


def _within(observed: int, trials: int, p: float) -> bool:
    """Binomial count within 4 standard deviations."""
    return abs(observed - trials * p) <= 4 * math.sqrt(trials * p * (1 - p)) + 1


def test_counts_add_up(faulty_run: Path, classified: dict[str, dict[str, list[Any]]]) -> None:
    summary = orjson.loads((faulty_run / "summary.json").read_bytes())
    total = {kind: sum(len(c[kind]) for c in classified.values()) for kind in ("valid", "duplicate", "malformed")}
    lines = sum(len((faulty_run / name).read_bytes().splitlines()) for name in SUBJECTS)
    assert lines == summary["messages"] == total["valid"] + total["duplicate"] + total["malformed"]
    assert total["valid"] == summary["valid_events"]
    assert total["duplicate"] == summary["duplicates"]
    assert total["malformed"] == sum(summary["malformed"].values())
    assert _within(total["malformed"], total["valid"], 0.02)
    assert _within(total["duplicate"], total["valid"], 0.02)


def test_every_kind_of_malformed_message_is_written(faulty_run: Path) -> None:
    summary = orjson.loads((faulty_run / "summary.json").read_bytes())
    assert set(summary["malformed"]) == set(JSON_FAULTS)


def test_malformed_messages_fail_with_a_reason(classified: dict[str, dict[str, list[Any]]]) -> None:
    errors = [e for c in classified.values() for e in c["malformed"]]
    assert {e.kind for e in errors} == {"invalid_json", "invalid_event"}
    assert all(e.errors and all(f.reason for f in e.errors) for e in errors)


def test_duplicates_are_exact_redeliveries_a_little_later(classified: dict[str, dict[str, list[Any]]]) -> None:
    for kinds in classified.values():
        assert kinds["duplicate"]
        valid = kinds["valid"]  # (line index, event time), in file order
        positions = [index for index, _ in valid]
        time_at = dict(valid)
        for original, again, identical in kinds["duplicate"]:
            assert identical and again > original
            # Written in time order: the duplicate sits between events of its redelivery
            # moment, which is 1-30 s after the original event.
            sent = time_at[original]
            after = bisect.bisect(positions, again)
            if after < len(valid):
                assert (valid[after][1] - sent).total_seconds() >= 1
            assert (valid[after - 1][1] - sent).total_seconds() <= 30


@pytest.mark.parametrize("fmt", ["avro", "confluent"])
def test_binary_formats_get_binary_faults(fmt: str) -> None:
    captured: list[tuple[str, str, bytes]] = []

    class Capture(NullSink):
        def emit(self, stream: str, event: dict[str, Any]) -> None:
            captured.append(("valid", stream, self.encode(stream, event)))

        def emit_raw(self, stream: str, payload: bytes, **_: Any) -> None:
            captured.append(("malformed", stream, payload))

    config = load_config()
    settings = Settings(
        seed=3,
        start_ms=1_793_520_000_000,
        sessions_per_second=3.0,
        users=1000,
        currency="USD",
        fraud_rate=0.01,
        fraud_patterns=tuple(FraudPattern),
        rules=config.fraud,
        session_gap_ms=1_800_000,
        malformed_fraction=0.05,
        duplicate_fraction=0.02,
    )
    stats = simulate(settings, Capture(fmt), until_ms=settings.start_ms + 30 * 60_000)
    subjects = {"clickstream": "clickstream_event", "orders": "order_event"}
    outcomes = {"valid": 0, "malformed": 0}
    for kind, stream, payload in captured:
        try:
            if fmt == "confluent":
                registry().from_confluent(payload, subjects[stream])
            else:
                get_schema(subjects[stream]).from_avro(payload)
            decoded = True
        except InvalidEvent:
            decoded = False
        assert decoded == (kind == "valid"), (kind, payload[:20])
        outcomes[kind] += 1
    assert outcomes["malformed"] == sum(stats.malformed.values()) > 0
    assert outcomes["valid"] == stats.valid_events + stats.duplicates
    expected_kinds = (
        set(BINARY_FAULTS)
        | {"json_on_avro_topic"}
        | ({"bad_magic_byte", "unknown_schema_id"} if fmt == "confluent" else set())
    )
    assert set(stats.malformed) == expected_kinds
