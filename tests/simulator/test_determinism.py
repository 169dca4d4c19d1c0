"""The same seed and options give the same bytes; faults add messages without changing events."""

from __future__ import annotations

from pathlib import Path

import orjson

from streamforge.schemas import InvalidEvent, get_schema
from tests.support.cli import simulate_to

FILES = ("clickstream.jsonl", "orders.jsonl", "fraud_labels.jsonl", "summary.json")
OPTIONS = ("--duration", "30m", "--fraud-rate", "0.05")


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = simulate_to(tmp_path / "a", "--seed", "7", *OPTIONS)
    second = simulate_to(tmp_path / "b", "--seed", "7", *OPTIONS)
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "fraud_labels.jsonl").stat().st_size > 0


def test_another_seed_other_events(tmp_path: Path) -> None:
    first = simulate_to(tmp_path / "a", "--seed", "7", *OPTIONS)
    second = simulate_to(tmp_path / "b", "--seed", "8", *OPTIONS)
    assert (first / "clickstream.jsonl").read_bytes() != (second / "clickstream.jsonl").read_bytes()


def _valid_first_deliveries(path: Path, subject: str) -> list[bytes]:
    schema, seen, kept = get_schema(subject), set(), []
    for line in path.read_bytes().splitlines():
        try:
            schema.from_json(line)
        except InvalidEvent:
            continue
        event_id = orjson.loads(line)["event_id"]
        if event_id not in seen:
            seen.add(event_id)
            kept.append(line)
    return kept


def test_faults_do_not_change_the_valid_events(tmp_path: Path) -> None:
    clean = simulate_to(tmp_path / "clean", "--seed", "7", *OPTIONS)
    faulty = simulate_to(tmp_path / "faulty", "--seed", "7", *OPTIONS, "--malformed", "0.05", "--duplicates", "0.05")
    for name, subject in (("clickstream.jsonl", "clickstream_event"), ("orders.jsonl", "order_event")):
        assert _valid_first_deliveries(faulty / name, subject) == (clean / name).read_bytes().splitlines()
    assert (clean / "fraud_labels.jsonl").read_bytes() == (faulty / "fraud_labels.jsonl").read_bytes()
