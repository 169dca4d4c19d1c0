"""The event-ingest endpoint: batches of clickstream and order events from web and mobile clients.

A request is ``POST`` with ``Content-Type: application/json``, the API key in the
``X-API-Key`` header (``ingest.api_key_header``), and a body::

    {"clickstream": [<clickstream_event>, ...], "orders": [<order_event>, ...]}

Each event is validated with its schema; the valid ones are published with their
``event_id``, ``event_time`` and ``received_at``; the answer lists every event as accepted or
rejected with the reason, so one bad event never costs the good ones. Statuses:

- 200 all accepted; 207 some accepted, some rejected; 422 none accepted;
- 503 (with Retry-After) when the output did not confirm some events: they are marked
  ``failed`` and may be sent again (the pipelines deduplicate by event_id); why the output
  failed (Pub/Sub's error, a file path) is logged, never answered: it is ours, not the client's;
- 400 malformed body, 401 missing or wrong key, 403 origin not allowed, 405 not POST,
  413 body or batch too large, 415 not JSON.

Browsers get CORS headers for the allowed origins, and preflight requests are answered.
Framework-free: ``handle`` takes the method, headers and body stream, so it is tested
without a server and wired to Flask by the function's main.py.

The trust model (docs/functions.md): a key is a ``browser`` key (public by nature: it ships
in a web page) or a ``server`` key (a secret of the shop's backend). A browser key may send
clickstream events only, from an allowed origin when the allowlist is set, at
``ingest.browser_events_per_second``; orders need a server key. Each key has a token bucket
in the instance (429 with Retry-After beyond it). The event_id a client chose is published
prefixed with its key's id (``<key id>.<event_id>``), so no client can claim, and so
suppress as a duplicate, an event_id another key's client sends.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import IO, Any, Mapping

import orjson

from streamforge.config import Config, IngestConfig, load_config
from streamforge.functions.logs import log
from streamforge.functions.outputs import OUTPUT_ENV, EventOutput, Message, OutputError, open_output
from streamforge.schemas import InvalidEvent, get_schema
from streamforge.schemas.errors import show_value
from streamforge.timeutil import format_duration, format_timestamp
from streamforge.transport import STREAM_SCHEMAS, message_attributes

__all__ = [
    "API_KEYS_ENV",
    "FAILED_REASON",
    "ApiKey",
    "IngestAnswer",
    "IngestConfigError",
    "IngestService",
    "parse_api_keys",
]

API_KEYS_ENV = "STREAMFORGE_INGEST_API_KEYS"
_MIN_KEY_LENGTH = 16
_RETRY_AFTER_SECONDS = "5"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: What a client is told about an event the output did not confirm (the cause is logged).
FAILED_REASON = "not stored: the event stream did not confirm it; send it again after Retry-After"
#: The longest event_id echoed back (the schemas' limit); a longer one is answered as null.
_MAX_ECHOED_ID = 64
#: Roles a key may have, and the streams each may send.
ROLES = {"browser": ("clickstream",), "server": ("clickstream", "orders")}
_KEY_ID_LENGTH = 8
#: What is left of the schemas' 64 characters for the client's own event_id.
MAX_CLIENT_EVENT_ID = 64 - _KEY_ID_LENGTH - 1


class IngestConfigError(ValueError):
    """The function's environment is incomplete or invalid (the message names the variable)."""


@dataclass
class IngestAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> bytes:
        return orjson.dumps(self.body)


@dataclass(frozen=True)
class ApiKey:
    role: str  # browser or server
    secret: str = field(repr=False)

    @cached_property
    def id(self) -> str:
        """A short, non-reversible name for the key: in logs, and the prefix of its events' ids."""
        return _key_id(self.secret)


def parse_api_keys(text: str | None) -> tuple[ApiKey, ...]:
    """Comma-separated keys (several while rotating), each ``browser:KEY`` or ``server:KEY``
    (a key without a role is a server key), each at least 16 characters."""
    keys = []
    for number, entry in enumerate((e.strip() for e in (text or "").split(",") if e.strip()), 1):
        role, _, secret = entry.partition(":")
        if not secret or role not in ROLES:
            role, secret = "server", entry
        if len(secret) < _MIN_KEY_LENGTH:
            raise IngestConfigError(f"{API_KEYS_ENV}: key #{number} is shorter than {_MIN_KEY_LENGTH} characters")
        keys.append(ApiKey(role, secret))
    if not keys:
        raise IngestConfigError(
            f"{API_KEYS_ENV} is not set: give the API keys clients may use, comma-separated "
            "(browser:KEY for web pages, server:KEY for backends)"
        )
    return tuple(keys)


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:_KEY_ID_LENGTH]


class _Buckets:
    """A token bucket of events per key, in this instance: ``take(key, n)`` returns 0 when the
    key may send n events now, else the seconds until it may."""

    def __init__(self, rates: dict[str, float], burst_s: float, clock=time.monotonic):
        self.rates, self.burst_s, self.clock = rates, burst_s, clock
        self._state: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: ApiKey, events: int) -> float:
        rate = self.rates[key.role]
        capacity = max(rate * self.burst_s, 1.0)
        now = self.clock()
        with self._lock:
            tokens, then = self._state.get(key.id, (capacity, now))
            tokens = min(capacity, tokens + (now - then) * rate)
            need = min(events, capacity)  # a batch larger than the bucket waits for a full one
            if need <= tokens:
                self._state[key.id] = (tokens - need, now)
                return 0.0
            self._state[key.id] = (tokens, now)
            return (need - tokens) / rate


class IngestService:
    def __init__(
        self,
        settings: IngestConfig,
        api_keys: tuple[ApiKey | str, ...],
        output: EventOutput,
        max_clock_skew: timedelta,
        min_event_time: datetime | None = None,
        max_event_age: timedelta | None = None,
        clock=time.monotonic,
    ):
        self.settings, self.output = settings, output
        self._keys = [(k if isinstance(k, ApiKey) else ApiKey("server", k)) for k in api_keys]
        self._buckets = _Buckets(
            {"browser": settings.browser_events_per_second, "server": settings.server_events_per_second},
            settings.burst.total_seconds(),
            clock,
        )
        self._max_skew = max_clock_skew  # as for the pipelines: later is a clock problem
        self._min_time, self._max_age = min_event_time, max_event_age  # as for the pipelines: not a real time
        self._schemas = {stream: get_schema(subject) for stream, subject in STREAM_SCHEMAS.items()}
        self._allow_any_origin = "*" in settings.allowed_origins
        self._preflight = {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": f"Content-Type, {settings.api_key_header}",
            "Access-Control-Max-Age": "3600",
        }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, config: Config | None = None) -> IngestService:
        environ = os.environ if environ is None else environ
        config = config or load_config()
        keys = parse_api_keys(environ.get(API_KEYS_ENV))
        url = environ.get(OUTPUT_ENV) or (
            f"pubsub://{environ['GOOGLE_CLOUD_PROJECT']}" if environ.get("GOOGLE_CLOUD_PROJECT") else None
        )
        if not url:
            raise IngestConfigError(f"set {OUTPUT_ENV} (pubsub://PROJECT or file://DIR) or GOOGLE_CLOUD_PROJECT")
        try:
            output = open_output(url, config.topics)
        except OutputError as exc:
            raise IngestConfigError(str(exc)) from None
        service = cls(
            config.ingest,
            keys,
            output,
            config.pipelines.max_clock_skew,
            config.pipelines.min_event_time,
            config.pipelines.max_event_age,
        )
        log(
            "INFO",
            "ingest ready",
            output=output.describe(),
            api_keys=[f"{k.role}:{k.id}" for k in keys],
            max_body_bytes=config.ingest.max_body_bytes,
            max_batch_events=config.ingest.max_batch_events,
        )
        return service

    # -- the request ---------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        headers: Mapping[str, str],
        body: IO[bytes],
        content_length: int | None,
        now: datetime | None = None,
    ) -> IngestAnswer:
        cors = self._cors(headers.get("Origin"))
        if cors is None:
            return IngestAnswer(403, {"error": f"origin {headers.get('Origin')!r} is not allowed"})
        if method == "OPTIONS":
            return IngestAnswer(204, {}, {**cors, **self._preflight})
        answer = self._post(method, headers, body, content_length, now or datetime.now(timezone.utc))
        answer.headers.update(cors)
        return answer

    def _cors(self, origin: str | None) -> dict[str, str] | None:
        if origin is None:
            return {}
        if self._allow_any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self.settings.allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return None

    def _post(
        self, method: str, headers: Mapping[str, str], body: IO[bytes], content_length: int | None, now: datetime
    ) -> IngestAnswer:
        settings = self.settings
        if method != "POST":
            return IngestAnswer(
                405, {"error": f"method {method} is not allowed: POST a JSON batch"}, {"Allow": "POST, OPTIONS"}
            )
        key = self._authenticate(headers.get(settings.api_key_header))
        if key is None:
            reason = (
                "invalid API key"
                if headers.get(settings.api_key_header)
                else f"missing {settings.api_key_header} header"
            )
            return IngestAnswer(401, {"error": reason})
        if key.role == "browser" and not self._allow_any_origin and headers.get("Origin") is None:
            return IngestAnswer(
                403, {"error": "a browser key is used from web pages: the request has no Origin header"}
            )
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return IngestAnswer(
                415, {"error": f"Content-Type must be application/json, got {content_type or 'none'!r}"}
            )
        encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            return IngestAnswer(
                415, {"error": f"Content-Encoding {encoding!r} is not supported: send the body uncompressed"}
            )
        limit = settings.max_body_bytes
        if content_length is not None and content_length > limit:
            return IngestAnswer(
                413, {"error": f"body of {content_length:,} bytes is over the limit of {limit:,} bytes"}
            )
        data = body.read(limit + 1)
        if len(data) > limit:
            return IngestAnswer(413, {"error": f"body is over the limit of {limit:,} bytes"})
        try:
            batch = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            return IngestAnswer(400, {"error": f"body is not valid JSON: {exc}"})
        problem = self._check_shape(batch)
        if problem:
            return IngestAnswer(400, {"error": problem})
        total = sum(len(events) for events in batch.values())
        if total == 0:
            return IngestAnswer(400, {"error": "the batch holds no events"})
        if total > settings.max_batch_events:
            return IngestAnswer(
                413,
                {
                    "error": f"{total:,} events in one request; the limit is "
                    f"{settings.max_batch_events:,}: split the batch"
                },
            )
        refused = [stream for stream, events in batch.items() if events and stream not in ROLES[key.role]]
        if refused:
            return IngestAnswer(
                403,
                {
                    "error": f"a {key.role} key may send {', '.join(ROLES[key.role])} events only, "
                    f"not {', '.join(refused)}: those come from your servers (a server key)"
                },
            )
        wait = self._buckets.take(key, total)
        if wait > 0:
            log("WARNING", "ingest rate limit", api_key=key.id, role=key.role, events=total)
            return IngestAnswer(
                429,
                {"error": f"over the rate limit of this {key.role} key: send again later"},
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        # one look at the body for the hidden-character rule: escape-free ASCII JSON has none
        plain = data.isascii() and b"\\" not in data and b"\x7f" not in data
        return self._ingest(batch, now, key, plain)

    def _authenticate(self, presented: str | None) -> ApiKey | None:
        """The matching key; every key is compared, in constant time, whatever matches."""
        if not presented:
            return None
        candidate = presented.encode()
        match = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key.secret.encode()):
                match = key
        return match

    @staticmethod
    def _check_shape(batch: Any) -> str | None:
        streams = ", ".join(STREAM_SCHEMAS)
        if not isinstance(batch, dict):
            return f"body must be a JSON object with the lists {streams}, got {type(batch).__name__}"
        unknown = [k for k in batch if k not in STREAM_SCHEMAS]
        if unknown:
            return f"unknown key {show_value(unknown[0])}: the body holds the lists {streams}"
        if not batch:
            return f"body holds none of the lists {streams}"
        for stream, events in batch.items():
            if not isinstance(events, list):
                return f"{stream!r} must be a list of events, got {type(events).__name__}"
        return None

    def _ingest(self, batch: dict[str, list[Any]], now: datetime, key: ApiKey, plain: bool = False) -> IngestAnswer:
        key_id = key.id
        received_at = format_timestamp(now)
        horizon = now + self._max_skew
        floor = max(t for t in (self._min_time, now - self._max_age if self._max_age else None, _EPOCH) if t)
        results: dict[str, list[dict[str, Any]]] = {}
        messages: list[Message] = []
        slots: list[dict[str, Any]] = []  # the result entry of each message
        seen: dict[str, str] = {}
        for stream, events in batch.items():
            schema, answers = self._schemas[stream], results.setdefault(stream, [])
            for index, event in enumerate(events):
                event_id = event.get("event_id") if isinstance(event, dict) else None
                echoed = event_id if isinstance(event_id, str) and len(event_id) <= _MAX_ECHOED_ID else None
                entry: dict[str, Any] = {"index": index, "event_id": echoed}
                answers.append(entry)
                if not isinstance(event, dict):
                    entry.update(status="rejected", reason=f"{stream}[{index}] is not a JSON object")
                    continue
                try:
                    record = schema.validate(event, plain_text=plain)
                except InvalidEvent as exc:
                    entry.update(status="rejected", reason=str(exc))
                    continue
                event_id = record["event_id"]
                if len(event_id) > MAX_CLIENT_EVENT_ID:
                    entry.update(
                        status="rejected",
                        reason=(
                            f"event_id is {len(event_id)} characters; through ingest at most {MAX_CLIENT_EVENT_ID} (it is "
                            f"published as <key id>.<event_id>, within the schemas' 64)"
                        ),
                    )
                    continue
                if event_id in seen:
                    entry.update(status="rejected", reason=f"duplicate event_id: same as {seen[event_id]}")
                    continue
                seen[event_id] = f"{stream}[{index}]"
                if record["event_time"] > horizon:
                    ahead = record["event_time"] - now
                    entry.update(
                        status="rejected",
                        reason=(
                            f"event_time {format_timestamp(record['event_time'])} is {format_duration(ahead)} ahead of the "
                            f"server clock (at most {format_duration(self._max_skew)}): fix the client's clock"
                        ),
                    )
                    continue
                if record["event_time"] < floor:
                    entry.update(
                        status="rejected",
                        reason=(
                            f"event_time {format_timestamp(record['event_time'])} is before {format_timestamp(floor)} "
                            f"(pipelines.min_event_time, or pipelines.max_event_age before now): not a real time"
                        ),
                    )
                    continue
                record["event_id"] = scoped = f"{key_id}.{event_id}"  # the client's id, in its key's namespace
                messages.append(
                    Message(
                        stream,
                        schema.to_json(record, validate=False),
                        message_attributes(
                            stream, scoped, format_timestamp(record["event_time"]), "json", received_at=received_at
                        ),
                    )
                )
                slots.append(entry)
        errors = self.output.publish(messages, self.settings.publish_timeout.total_seconds()) if messages else []
        for entry, error in zip(slots, errors):
            entry.update(status="accepted") if error is None else entry.update(status="failed", reason=FAILED_REASON)
        causes = [error for error in errors if error is not None]
        if causes:
            log(
                "ERROR",
                "ingest output failed",
                api_key=key_id,
                failed=len(causes),
                cause=causes[0],
                output=self.output.describe(),
            )
        counts = {
            status: sum(1 for answers in results.values() for e in answers if e["status"] == status)
            for status in ("accepted", "rejected", "failed")
        }
        body = {"received_at": received_at, **counts, "results": results}
        log(
            "WARNING" if counts["rejected"] or counts["failed"] else "INFO",
            "ingest batch",
            api_key=key_id,
            **counts,
            first_problem=next(
                (e["reason"] for answers in results.values() for e in answers if e["status"] == "rejected"), None
            ),
        )
        if counts["failed"]:
            return IngestAnswer(503, body, {"Retry-After": _RETRY_AFTER_SECONDS})
        if counts["rejected"] == 0:
            return IngestAnswer(200, body)
        return IngestAnswer(207 if counts["accepted"] else 422, body)
