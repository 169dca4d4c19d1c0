"""Events that validate by type but cannot be real: epoch-zero and ancient times, times far
older than their receipt, hidden characters and values outside the vocabulary. They are dead
letters with their own reason in batch and streaming alike, never warehouse rows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.common.io import parse_input, parse_warehouse
from beam_pipelines.common.parse import DedupMode, EventParser, ParseEvents
from beam_pipelines.local.direct_runner_fixes import patched_direct_runner
from beam_pipelines.requests import JobRequest
from beam_pipelines.runner import local_runner_tuning, pipeline_options, run
from streamforge.config import load_config
from streamforge.timeutil import format_timestamp, to_millis
from streamforge.vocabulary import REGION_CODES
from tests.support.samples import sample

CONFIG = load_config()
NOW = datetime.now(timezone.utc).replace(microsecond=0)
LIMITS = {"min_event_time": CONFIG.pipelines.min_event_time, "max_event_age": CONFIG.pipelines.max_event_age}


def _click(event_id: str, at: datetime, **changes: Any) -> dict[str, Any]:
    return sample("clickstream_event", event_id=event_id, event_time=format_timestamp(at), **changes)


#: (event, why it is refused): what a fuzzer and a hostile client sent.
IMPOSSIBLE = [
    (_click("epoch", datetime(1970, 1, 1, tzinfo=timezone.utc)), "too_old"),
    (_click("y1999", datetime(1999, 12, 31, 23, 59, tzinfo=timezone.utc)), "too_old"),
    (_click("bidi", NOW, geo_region="\u202e\u0000\ud7ffus-east"), "invalid_event"),
    (_click("rtl", NOW, geo_region="\u202eus-east"), "invalid_event"),
    (_click("nul-user", NOW, user_id="U1\x00"), "invalid_event"),
    (_click("zw", NOW, user_id="U\u200b1"), "invalid_event"),
    (_click("mars", NOW, geo_region="mars-north"), "invalid_event"),
    (
        _click("cat", NOW, event_type="product_view", product_id="P1", category="Electronics", price="9.99"),
        "invalid_event",
    ),
]
VALID = [_click(f"ok-{n}", NOW - timedelta(minutes=n), user_id=f"U{n % 3}") for n in range(6)]


def _parser() -> EventParser:
    return EventParser("clickstream", "test", "Parse clickstream", CONFIG.pipelines.max_clock_skew, **LIMITS)


def test_the_parser_refuses_each_with_the_field_and_the_reason() -> None:
    parser, clock = _parser(), to_millis(NOW)
    reasons = {}
    for event, _ in IMPOSSIBLE:
        parsed, dead = parser.parse(json.dumps(event).encode(), clock)
        assert parsed is None
        reasons[event["event_id"]] = (dead["reason"], dead["error"])
    assert reasons["epoch"] == (
        "too_old",
        "event_time 1970-01-01T00:00:00.000Z is before pipelines.min_event_time "
        "2000-01-01T00:00:00.000Z: not a real time (epoch zero is a missing clock)",
    )
    assert "geo_region=" in reasons["bidi"][1] and "contains U+202E RIGHT-TO-LEFT OVERRIDE" in reasons["bidi"][1]
    assert "contains U+0000 NUL" in reasons["nul-user"][1] and "U+200B ZERO WIDTH SPACE" in reasons["zw"][1]
    assert "geo_region='mars-north': not a known region (ap-northeast, " in reasons["mars"][1]
    assert "category='Electronics': not a known category" in reasons["cat"][1]


def test_an_event_older_than_its_receipt_allows_is_too_old_and_without_a_receipt_only_the_floor_applies() -> None:
    parser, clock = _parser(), to_millis(NOW)
    week_old = json.dumps(_click("old", NOW - timedelta(days=8))).encode()
    _, dead = parser.parse(week_old, clock, "json", received_ms=clock)
    assert dead["reason"] == "too_old" and "8d before the message was received" in dead["error"]
    assert parser.parse(week_old, clock, "json", received_ms=clock - 2 * 86_400_000)[1] is None  # 6 days then
    assert parser.parse(week_old, clock, "json")[1] is None  # a file: no receipt time


def _dead_letters(payloads: list[Any], streaming: bool) -> list[tuple[str, str]]:
    """Runs ``payloads`` through ParseEvents: the dead letters are IMPOSSIBLE's, with their
    reasons (and, streaming, the week-old event received through ingest)."""
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = streaming
    with local_runner_tuning(), patched_direct_runner(), beam.Pipeline(runner="DirectRunner", options=options) as p:
        if streaming:
            source = p | BeamTestStream().add_elements(payloads).advance_watermark_to_infinity()
        else:
            source = p | beam.Create([payloads])
        parsed = source | ParseEvents(
            "clickstream",
            "test",
            DedupMode.STATE if streaming else DedupMode.GROUP,
            dedup_ttl=timedelta(hours=1),
            max_clock_skew=timedelta(minutes=5),
            **LIMITS,
        )
        found = parsed.dead_letters | beam.Map(lambda d: (d["event_id"], d["reason"]))
        expected = sorted(
            [(event["event_id"], reason) for event, reason in IMPOSSIBLE]
            + ([("week-old", "too_old")] if streaming else [])
        )
        assert_that(found, equal_to(expected))
    return expected


@pytest.mark.parametrize("streaming", [False, True], ids=["batch", "streaming"])
def test_batch_and_streaming_dead_letter_them_the_same_way(streaming: bool) -> None:
    payloads = [json.dumps(event).encode() for event, _ in IMPOSSIBLE]
    if streaming:  # as Pub/Sub hands over what the ingest function published, with its receipt time
        received_at = format_timestamp(NOW)
        payloads = [PubsubMessage(p, {"encoding": "json", "received_at": received_at}) for p in payloads]
        payloads.append(
            PubsubMessage(
                json.dumps(_click("week-old", NOW - timedelta(days=8))).encode(),
                {"encoding": "json", "received_at": received_at},
            )
        )
    _dead_letters(payloads, streaming)


@pytest.mark.slow
def test_a_batch_run_keeps_them_out_of_every_table_and_accounts_for_them(tmp_path: Path) -> None:
    lines = [json.dumps(event) for event in VALID] + [json.dumps(event) for event, _ in IMPOSSIBLE]
    (tmp_path / "clickstream.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "orders.jsonl").write_text("")
    warehouse = tmp_path / "w.duckdb"
    inputs = {s: parse_input(f"file://{tmp_path / (s + '.jsonl')}") for s in ("clickstream", "orders")}
    request = JobRequest("all", inputs, parse_warehouse(f"duckdb://{warehouse}"), CONFIG)
    report = run(request, pipeline_options(request))
    assert report.accounting("clickstream") == (len(lines), len(VALID), len(IMPOSSIBLE), 0)
    con = duckdb.connect(str(warehouse), read_only=True)
    regions = {region for (region,) in con.execute("SELECT DISTINCT geo_region FROM user_sessions").fetchall()}
    assert regions <= REGION_CODES
    (oldest,) = con.execute("SELECT min(session_start) FROM user_sessions").fetchone()
    assert oldest.year >= 2000
    (sessions,) = con.execute("SELECT sum(event_count) FROM user_sessions").fetchone()
    assert sessions == len(VALID)
    dead = con.execute("SELECT event_id, reason FROM dead_letter ORDER BY event_id").fetchall()
    assert dead == sorted((event["event_id"], reason) for event, reason in IMPOSSIBLE)
