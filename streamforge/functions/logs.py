"""Structured logs for Cloud Logging: one JSON object per line on stdout.

Cloud Functions (2nd gen) turns such a line into a log entry with its ``severity`` and
``message``; the other keys become searchable ``jsonPayload`` fields (alert_id, webhook,
reason, ...). Callers pass names and outcomes only, never URLs, keys or secrets.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import orjson

__all__ = ["log"]

_lock = threading.Lock()


def log(severity: str, message: str, **fields: Any) -> None:
    """``severity`` is a Cloud Logging severity: DEBUG, INFO, WARNING, ERROR."""
    line = orjson.dumps(
        {"severity": severity, "message": message, **fields}, default=str, option=orjson.OPT_APPEND_NEWLINE
    ).decode()
    with _lock:
        sys.stdout.write(line)
        sys.stdout.flush()
