"""Timestamps and durations as StreamForge writes them: RFC 3339 UTC, millisecond precision."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

__all__ = [
    "format_timestamp",
    "format_duration",
    "format_millis",
    "millis_to_datetime",
    "parse_duration",
    "parse_timestamp",
    "to_millis",
]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime.

    Raises ValueError with the reason; sub-millisecond digits are truncated.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 string, got {type(text).__name__}")
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError("expected an RFC 3339 timestamp such as 2026-11-01T08:00:00.000Z")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micros = int((m.group(7) or "0")[:6].ljust(6, "0")) // 1000 * 1000
    if m.group(8):
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if offset >= timedelta(hours=24):
            raise ValueError("UTC offset out of range")
        tz = timezone(offset if m.group(9) == "+" else -offset)
    try:
        value = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid date/time: {exc}") from None


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-11-01T08:00:00.123Z."""
    value = value.astimezone(timezone.utc)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def to_millis(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def millis_to_datetime(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


def format_millis(millis: int) -> str:
    return format_timestamp(millis_to_datetime(millis))


def parse_duration(text: str | int | float) -> timedelta:
    """'2h', '90m', '1h30m', '45s', '500ms', '1d' or a number of seconds."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 2h, 90m or 45s")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        compact = text.strip().replace(" ", "").lower()
        if re.fullmatch(r"\d+(\.\d+)?", compact):
            seconds = float(compact)
        else:
            parts = _DURATION_PART.findall(compact)
            if not parts or "".join(n + u for n, u in parts) != compact:
                raise ValueError(f"'{text}' is not a duration such as 2h, 90m, 1h30m or 45s")
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration for whole seconds: 2h, 1h30m, 45s."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
