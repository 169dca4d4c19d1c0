"""Fuzzing the parse step and a whole batch run with the mutation corpus (tests/support/mutations.py)
and Hypothesis: nothing crashes, every input is accounted for, and no accepted event holds a
control character, an impossible time or a value outside the vocabulary.

The invariants are stated independently of the validator: Unicode categories for hidden
characters (Cc, Cf, Zl, Zp), the simulator's catalog and streamforge/geo.py for the vocabulary.
The default run fuzzes a few thousand inputs; the slow set 100,000 through the parser and
20,000 through ``run all``."""

from __future__ import annotations

import base64
import json
import unicodedata
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipelines.common.io import parse_input, parse_warehouse
from beam_pipelines.common.parse import EventParser, now_ms
from beam_pipelines.requests import JobRequest
from beam_pipelines.runner import pipeline_options, run
from streamforge.config import load_config
from streamforge.geo import REGIONS
from streamforge.schemas import get_schema
from streamforge.simulator.catalog import CATEGORIES as CATALOG
from tests.support.mutations import MUTATIONS, mutated

CONFIG = load_config()
FLOOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
KNOWN_CATEGORIES = {category.name for category in CATALOG}
DEAD_LETTER = get_schema("dead_letter")
STREAMS = {"clickstream": "clickstream.jsonl", "orders": "orders.jsonl"}


def _parser(stream: str) -> EventParser:
    return EventParser(
        stream,
        "fuzz",
        f"Parse {stream}",
        CONFIG.pipelines.max_clock_skew,
        min_event_time=CONFIG.pipelines.min_event_time,
        max_event_age=CONFIG.pipelines.max_event_age,
    )


def _texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def assert_plausible(event: dict[str, Any]) -> None:
    """What an accepted event must be, said without the validator's code."""
    for text in _texts(event):
        hidden = [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
        assert not hidden, (event["event_id"], text[:80])
    assert event["event_time"] >= FLOOR, event["event_id"]
    region = event.get("geo_region", event.get("shipping_region"))
    assert region in REGIONS, region
    categories = [event.get("category")] + [item["category"] for item in event.get("items", [])]
    assert all(c is None or c in KNOWN_CATEGORIES for c in categories), categories


def fuzz_parser(stream: str, corpus: Iterable[tuple[str, bytes]]) -> Counter:
    """Every input parsed or dead-lettered (never an exception), the dead letter valid and its
    payload the input; returns per kind how many were accepted and dead-lettered."""
    parser, clock, outcome = _parser(stream), now_ms(), Counter()
    for kind, line in corpus:
        event, dead = parser.parse(line, clock)
        assert (event is None) != (dead is None)
        if event is not None:
            assert_plausible(event)
            outcome[kind, "accepted"] += 1
            continue
        record = DEAD_LETTER.validate(dead)
        payload = (
            base64.b64decode(record["payload"])
            if record["payload_encoding"] == "base64"
            else record["payload"].encode("utf-8", "surrogatepass")
        )
        assert payload == line and record["reason"] and record["error"]
        outcome[kind, "dead"] += 1
    return outcome


def _lines(run_dir: Path, stream: str) -> list[bytes]:
    return (run_dir / STREAMS[stream]).read_bytes().splitlines()


def _assert_each_kind_refused(outcome: Counter) -> None:
    refused = {kind for (kind, verdict), n in outcome.items() if verdict == "dead" and n}
    always_bad = {
        "hidden_character",
        "impossible_time",
        "unknown_value",
        "truncated",
        "binary_junk",
        "not_an_object",
        "huge_string",
    }
    assert always_bad <= refused
    for kind in always_bad:  # these can never be accepted (flipped bytes or a wrong type sometimes can)
        assert outcome[kind, "accepted"] == 0, kind
    assert outcome["valid", "dead"] == 0 and outcome["valid", "accepted"] > 0


@pytest.mark.parametrize("stream", list(STREAMS))
def test_a_sample_of_the_corpus_through_the_parser(default_run: Path, stream: str) -> None:
    outcome = fuzz_parser(stream, mutated(_lines(default_run, stream), 3000, seed=7))
    assert sum(outcome.values()) == 3000
    _assert_each_kind_refused(outcome)


@pytest.mark.slow
def test_a_hundred_thousand_inputs_through_the_parser(default_run: Path) -> None:
    totals = Counter()
    for stream, count in (("clickstream", 60_000), ("orders", 40_000)):
        outcome = fuzz_parser(stream, mutated(_lines(default_run, stream), count, seed=20261203))
        assert sum(outcome.values()) == count
        _assert_each_kind_refused(outcome)
        totals.update(outcome)
    assert sum(totals.values()) == 100_000
    assert {kind for kind, _ in totals} == set(MUTATIONS) | {"valid"}


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "user_id",
                "session_id",
                "event_type",
                "event_time",
                "device_type",
                "geo_region",
                "category",
                "price",
                "quantity",
                "items",
                "currency",
            ]
        ),
        st.one_of(
            st.text(max_size=30),
            st.integers(),
            st.floats(),
            st.none(),
            st.booleans(),
            st.lists(st.dictionaries(st.text(max_size=10), st.text(max_size=10)), max_size=3),
        ),
        max_size=12,
    ),
    st.sampled_from(list(STREAMS)),
)
def test_arbitrary_documents_are_parsed_or_dead_lettered(document: dict, stream: str) -> None:
    line = json.dumps(document).encode()
    assert sum(fuzz_parser(stream, [("hypothesis", line)]).values()) == 1


@pytest.mark.slow
def test_twenty_thousand_fuzzed_lines_through_run_all(default_run: Path, tmp_path: Path) -> None:
    """The whole batch job: read = unique + dead letters + duplicates per stream, the dead_letter
    table equals the counters, and no warehouse row holds what the parser must refuse."""
    written = {}
    for stream, count, seed in (("clickstream", 15_000, 1), ("orders", 5_000, 2)):
        lines = [line for _, line in mutated(_lines(default_run, stream), count, seed=seed)]
        (tmp_path / STREAMS[stream]).write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
        written[stream] = len(lines)
    warehouse = tmp_path / "fuzz.duckdb"
    inputs = {s: parse_input(f"file://{tmp_path / STREAMS[s]}") for s in STREAMS}
    request = JobRequest("all", inputs, parse_warehouse(f"duckdb://{warehouse}"), CONFIG)
    report = run(request, pipeline_options(request))
    dead_total = 0
    for stream in STREAMS:
        read, unique, dead, duplicates = report.accounting(stream)
        assert read == written[stream] == unique + dead + duplicates
        assert dead > 0 and duplicates > 0
        dead_total += dead
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM dead_letter").fetchone()[0] == dead_total
    regions = {
        r
        for (r,) in con.execute(
            "SELECT DISTINCT geo_region FROM user_sessions UNION SELECT DISTINCT region FROM revenue_by_category_region"
        ).fetchall()
    }
    assert regions <= set(REGIONS)
    categories = {c for (c,) in con.execute("SELECT DISTINCT category FROM revenue_by_category_region").fetchall()}
    assert categories <= KNOWN_CATEGORIES
    (oldest,) = con.execute(
        "SELECT least((SELECT min(session_start) FROM user_sessions), "
        "(SELECT min(window_start) FROM revenue_per_minute))"
    ).fetchone()
    assert oldest.replace(tzinfo=timezone.utc) >= FLOOR
