"""Dead-letter records always fit their schema and keep the original message recoverable."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.common.dead_letters import dead_letter, from_invalid_event
from streamforge.schemas import InvalidEvent, get_schema

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
SCHEMA = get_schema("dead_letter")
ANY_CHARACTER = st.characters(codec=None, blacklist_categories=())


def _recovered(record: dict) -> bytes:
    if record["payload_encoding"] == "base64":
        return base64.b64decode(record["payload"])
    return record["payload"].encode("utf-8")


def test_invalid_json_event_keeps_reason_error_and_ids() -> None:
    payload = b'{"event_id": "e-1", "event_time": "2026-11-01T08:00:00Z", "event_type": "hover"}'
    with pytest.raises(InvalidEvent) as caught:
        get_schema("clickstream_event").from_json(payload)
    record = SCHEMA.validate(
        from_invalid_event(
            "sessions", "ParseClickstream", caught.value, payload, received_at=NOW, source="file://x/clickstream.jsonl"
        )
    )
    assert record["reason"] == "invalid_event"
    assert "event_type='hover': not one of page_view" in record["error"]
    assert (record["event_id"], record["event_time"]) == ("e-1", datetime(2026, 11, 1, 8, tzinfo=timezone.utc))
    assert record["payload_encoding"] == "utf8" and _recovered(record) == payload


def test_binary_payload_is_base64() -> None:
    payload = b"\x00\x7f\xff\xff\xfe\x02\xc3\x28"
    record = SCHEMA.validate(dead_letter("fraud", "ParseOrders", "invalid_avro", "bad", payload, received_at=NOW))
    assert record["payload_encoding"] == "base64" and _recovered(record) == payload
    assert record["event_id"] is None and record["event_time"] is None


def test_long_texts_are_cut_to_the_schema_limits() -> None:
    record = SCHEMA.validate(
        dead_letter(
            "p" * 100, "s" * 200, "r" * 100, "e" * 10_000, b"{}", received_at=NOW, source="x" * 2000, event_id="i" * 300
        )
    )
    assert len(record["error"]) == 4096 and record["error"].endswith("…")
    assert len(record["pipeline"]) == 64 and len(record["event_id"]) == 256


def test_every_malformed_simulator_message_makes_a_valid_dead_letter(faulty_run: Path) -> None:
    found = 0
    for name, subject in (("clickstream.jsonl", "clickstream_event"), ("orders.jsonl", "order_event")):
        for line in (faulty_run / name).read_bytes().splitlines():
            try:
                get_schema(subject).from_json(line)
            except InvalidEvent as exc:
                record = SCHEMA.validate(from_invalid_event("all", "Parse", exc, line, received_at=NOW))
                assert _recovered(record) == line
                found += 1
    assert found > 100


def test_lone_surrogates_in_texts_are_escaped() -> None:
    record = SCHEMA.validate(
        dead_letter(
            "p", "step\ud800", "r", "bad \udcff value", "x\ud800".encode("utf-8", "surrogatepass"), received_at=NOW
        )
    )
    assert record["step"] == "step\\ud800" and record["error"] == "bad \\udcff value"
    assert record["payload_encoding"] == "base64"


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=200) | st.text(ANY_CHARACTER, max_size=200),
    st.text(ANY_CHARACTER, max_size=300),
    st.text(ANY_CHARACTER, max_size=80),
)
def test_any_message_and_error_fit_the_schema(payload: bytes | str, error: str, step: str) -> None:
    record = SCHEMA.validate(dead_letter("p", step, "invalid_json", error, payload, received_at=NOW, source=step))
    original = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    assert _recovered(record) == original
