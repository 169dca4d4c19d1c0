"""Dead-letter records: a rejected message kept with the reason, never dropped unseen.

Plain Python, used by every job's parse step. A record fits the ``dead_letter`` schema
whatever it is given: the payload is kept as UTF-8 text when it is valid UTF-8, else
base64; over-long texts are cut to the schema's limits; the event id and time are peeked
from a JSON payload when the caller does not know them.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

from streamforge.schemas import InvalidEvent
from streamforge.timeutil import parse_timestamp

__all__ = ["dead_letter", "from_invalid_event"]

# Lengths allowed by dead_letter.v1.avsc.
_MAX = {"pipeline": 64, "step": 128, "reason": 64, "error": 4096, "source": 1024, "event_id": 256}
_MAX_PAYLOAD = 10 * 1024 * 1024


def _cut(text: str, limit: int) -> str:
    """``text`` as valid Unicode (lone surrogates escaped) and at most ``limit`` characters."""
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _payload(payload: bytes | str) -> tuple[str, str]:
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    try:
        text = payload.decode("utf-8")
        encoding = "utf8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    if len(text) > _MAX_PAYLOAD:  # cannot happen for messages the decoders accept (10 MB)
        text = text[:_MAX_PAYLOAD]
    return text, encoding


def _peek(payload: bytes | str) -> tuple[str | None, datetime | None]:
    """The event_id and event_time of a JSON payload, when they can be read."""
    try:
        document = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    event_id = document.get("event_id")
    event_id = event_id if isinstance(event_id, str) and 0 < len(event_id) <= _MAX["event_id"] else None
    try:
        event_time = parse_timestamp(document.get("event_time"))
    except ValueError:
        event_time = None
    return event_id, event_time


def dead_letter(
    pipeline: str,
    step: str,
    reason: str,
    error: str,
    payload: bytes | str,
    *,
    received_at: datetime,
    source: str | None = None,
    event_id: str | None = None,
    event_time: datetime | None = None,
) -> dict[str, Any]:
    """A ``dead_letter`` record (schema's Python form) for one rejected message."""
    text, encoding = _payload(payload)
    if event_id is None and event_time is None:
        event_id, event_time = _peek(payload)
    return {
        "pipeline": _cut(pipeline, _MAX["pipeline"]) or "unknown",
        "step": _cut(step, _MAX["step"]) or "unknown",
        "reason": _cut(reason, _MAX["reason"]) or "unknown",
        "error": _cut(error, _MAX["error"]) or "(no message)",
        "source": None if source is None else _cut(source, _MAX["source"]),
        "payload": text,
        "payload_encoding": encoding,
        "event_id": None if event_id is None else _cut(event_id, _MAX["event_id"]),
        "event_time": event_time,
        "received_at": received_at,
    }


def from_invalid_event(
    pipeline: str,
    step: str,
    exc: InvalidEvent,
    payload: bytes | str,
    *,
    received_at: datetime,
    source: str | None = None,
) -> dict[str, Any]:
    """The dead letter for a message a schema rejected: reason is the failing stage
    (invalid_json, invalid_avro, invalid_event), error the field-by-field message."""
    return dead_letter(pipeline, step, exc.kind, str(exc), payload, received_at=received_at, source=source)
