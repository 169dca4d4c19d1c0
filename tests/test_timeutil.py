"""Timestamps (RFC 3339, UTC, milliseconds) and durations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamforge.timeutil import (
    format_duration,
    format_millis,
    format_timestamp,
    millis_to_datetime,
    parse_duration,
    parse_timestamp,
    to_millis,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, tzinfo=timezone.utc)),
        ("2026-11-01T08:00:00.5Z", datetime(2026, 11, 1, 8, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2026-11-01t09:30:00.123999+01:30", datetime(2026, 11, 1, 8, 0, 0, 123000, tzinfo=timezone.utc)),
        ("2026-11-01 03:00:00-05:00", datetime(2026, 11, 1, 8, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-11-01", "2026-11-01T08:00:00", "2026-02-30T00:00:00Z", "2026-11-01T08:00:00+24:00", "", "now"]
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@given(st.integers(min_value=0, max_value=253402300799999))
def test_millis_round_trip(millis: int) -> None:
    assert to_millis(millis_to_datetime(millis)) == millis
    assert to_millis(parse_timestamp(format_millis(millis))) == millis


def test_format_timestamp_converts_to_utc() -> None:
    local = datetime(2026, 11, 1, 9, 0, 0, 7000, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(local) == "2026-11-01T08:00:00.007Z"


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("2h", 7200),
        ("90m", 5400),
        ("1h30m", 5400),
        ("45s", 45),
        ("500ms", 0.5),
        ("1d", 86400),
        ("30", 30),
        (12, 12),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "1h 30", "-5m", True])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds
