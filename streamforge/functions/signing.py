"""Signing webhook requests, and verifying them on the receiving side.

A generic JSON webhook request carries three headers beside the alert body:

- ``Idempotency-Key``: the alert_id, for receivers that dedupe on a header. It is not
  signed: a receiver dedupes on the signed body's ``alert_id`` (a replay with another key
  verifies again), answering 200 and doing nothing for one it has seen;
- ``X-StreamForge-Timestamp``: Unix seconds when the request was signed;
- ``X-StreamForge-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the webhook's
  secret, of ``<timestamp>.<body>``.

A receiver recomputes the HMAC over the bytes it received, compares in constant time, and
refuses a timestamp older (or newer) than a tolerance, so a captured request cannot be
replayed later. Standard library only: receivers can vendor this file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Mapping, Sequence

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign",
    "signature_headers",
    "verify_signature",
]

SIGNATURE_HEADER = "X-StreamForge-Signature"
TIMESTAMP_HEADER = "X-StreamForge-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How far a signed timestamp may be from the receiver's clock.
DEFAULT_TOLERANCE_SECONDS = 300
_SCHEME = "v1"
#: Unix seconds as a sender writes them: ASCII digits only (``str.isdigit`` also takes ``²``),
#: and few enough that the value stays a plausible time (no 400-digit number to overflow on).
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}", re.ASCII)


class SignatureError(ValueError):
    """A request's signature is missing, malformed, stale or wrong (the message says which)."""


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-StreamForge-Signature`` value for ``body`` signed at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{_SCHEME}={digest}"


def signature_headers(secret: str | bytes, alert_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The idempotency, timestamp and signature headers of one request."""
    timestamp = int(time.time() if now is None else now)
    return {
        IDEMPOTENCY_HEADER: alert_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify_signature(
    secrets: str | bytes | Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Checks a received request; returns its signed timestamp or raises SignatureError.

    Whatever the headers hold, the only exception a request can cause is SignatureError.

    ``secrets`` may list several (the current and the previous one while rotating); ``headers``
    is any case-insensitive mapping of the request's headers (or a plain dict with the exact
    names); ``body`` the raw bytes as received, before any JSON parsing.
    """
    keys = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    if not keys or not all(keys):
        raise SignatureError("no secret to verify with")
    timestamp_text, signature = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not timestamp_text:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not _UNIX_SECONDS.fullmatch(timestamp_text):
        raise SignatureError(f"{TIMESTAMP_HEADER} {timestamp_text[:40]!r} is not Unix seconds (1 to 12 ASCII digits)")
    timestamp = int(timestamp_text)
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {abs(skew):.0f} s {'old' if skew > 0 else 'ahead'} "
            f"(tolerance {tolerance:.0f} s): a replayed or delayed request"
        )
    # a hex digest is ASCII: any other part cannot match (and compare_digest refuses non-ASCII str)
    offered = [part.strip() for part in signature.split(",") if part.isascii()]
    if not any(part.startswith(f"{_SCHEME}=") for part in offered):
        raise SignatureError(f"{SIGNATURE_HEADER} has no {_SCHEME}= signature")
    for key in keys:
        expected = sign(key, timestamp, body)
        if any(hmac.compare_digest(expected, part) for part in offered):
            return timestamp
    raise SignatureError("signature does not match the body (tampered body, or the wrong secret)")
