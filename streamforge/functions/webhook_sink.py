"""A local webhook receiver for demos and tests: verifies signatures, keeps each alert once.

``POST /slack`` takes Slack-format messages (unsigned, as Slack's own endpoint would); any
other path takes signed generic JSON alerts: a bad or missing signature is answered 401 with
the reason, a body that is not a JSON alert with an ``alert_id`` 400, an alert_id seen before
200 "duplicate". Duplicates are found by the signed body's ``alert_id``, never by the
``Idempotency-Key`` header alone: the signature does not cover headers, so a replayed request
with another key must still be a duplicate (a key that disagrees with the body is refused).
A request without a plain ``Content-Length`` (negative, not digits, chunked) is answered 400
or 411 and its connection closed; a body that does not arrive within ``read_timeout`` too.
Every request is handed to ``on_request`` with what was decided, so the CLI can print it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

import orjson

from streamforge.functions.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    IDEMPOTENCY_HEADER,
    SignatureError,
    verify_signature,
)

__all__ = ["SECRET_ENV", "Received", "WebhookSink"]

#: The environment variable that holds the sink's signing secret(s), unless told another.
SECRET_ENV = "STREAMFORGE_WEBHOOK_SECRET"

LOOPBACK = "127.0.0.1"
_MAX_BODY = 1024 * 1024
#: A Content-Length as RFC 9110 has it: digits only (no sign, no spaces), and not absurdly long.
_CONTENT_LENGTH = re.compile(r"[0-9]{1,10}", re.ASCII)


@dataclass(frozen=True)
class Received:
    """One request: ``verdict`` is alert, duplicate, slack, bad_request, bad_signature or bad_body."""

    verdict: str
    path: str
    received_at: float  # time.time()
    body: Any  # the parsed JSON, or None
    reason: str | None = None
    idempotency_key: str | None = None


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a burst of parallel deliveries (the dispatcher's)
    # overflowed it and connections were reset
    request_queue_size = 128


class WebhookSink:
    def __init__(
        self,
        secrets: Sequence[str],
        *,
        host: str = LOOPBACK,
        port: int = 0,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        read_timeout: float = 10.0,
        on_request: Callable[[Received], None] | None = None,
    ):
        self.secrets, self.tolerance, self.read_timeout = list(secrets), tolerance, read_timeout
        self.on_request = on_request or (lambda received: None)
        self.alerts: list[Received] = []
        self.counts = {"alert": 0, "duplicate": 0, "slack": 0, "bad_request": 0, "bad_signature": 0, "bad_body": 0}
        self._seen: set[str] = set()
        self._lock, self._output_lock = threading.Lock(), threading.Lock()
        self.server = _Server((host, port), self._handler())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # else keep-alive responses wait ~40 ms for an ACK
            protocol_version = "HTTP/1.1"
            timeout = sink.read_timeout  # per socket read: a client that stops sending frees its thread

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                refused = self._refused_framing()
                if refused:
                    status, reason = refused
                    sink._record(Received("bad_request", self.path, time.time(), None, reason), status)
                    self._answer(status, {"status": "bad_request", "error": reason}, close=True)
                    return
                length = int(self.headers["Content-Length"])
                try:
                    body = self.rfile.read(length)
                except TimeoutError:
                    body = b""
                if len(body) < length:  # the client stopped sending (timeout) or closed early
                    reason = f"body ended after {len(body)} of {length} bytes"
                    sink._record(Received("bad_request", self.path, time.time(), None, reason), 400)
                    self.close_connection = True
                    return
                status, answer = sink.receive(self.path, self.headers, body)
                self._answer(status, answer)

            def _refused_framing(self) -> tuple[int, str] | None:
                """Why the body cannot be read safely (status, reason), or None."""
                if self.headers.get("Transfer-Encoding"):
                    return 411, "Transfer-Encoding is not accepted: send a Content-Length"
                text = self.headers.get("Content-Length")
                if text is None:
                    return 411, "Content-Length required"
                if not _CONTENT_LENGTH.fullmatch(text):
                    return 400, f"Content-Length {text[:40]!r} is not a byte count"
                if int(text) > _MAX_BODY:
                    return 413, f"body too large ({text} bytes, at most {_MAX_BODY})"
                return None

            def _answer(self, status: int, body: dict[str, Any], close: bool = False) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if close:  # the unread body would be taken for the next request
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # the CLI prints its own lines
                pass

        return Handler

    def receive(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        now = time.time()
        if path.rstrip("/") == "/slack":
            try:
                message = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return self._record(Received("bad_body", path, now, None, f"not JSON: {exc}"), 400)
            return self._record(Received("slack", path, now, message), 200)
        key = headers.get(IDEMPOTENCY_HEADER)
        try:
            verify_signature(self.secrets, headers, body, tolerance=self.tolerance, now=now)
        except SignatureError as exc:
            return self._record(Received("bad_signature", path, now, None, str(exc), key), 401)
        try:
            alert = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self._record(Received("bad_body", path, now, None, f"not JSON: {exc}", key), 400)
        alert_id = alert.get("alert_id") if isinstance(alert, dict) else None
        if not isinstance(alert_id, str) or not alert_id:
            return self._record(Received("bad_body", path, now, None, "no alert_id in the signed body", key), 400)
        if key is not None and key != alert_id:
            reason = f"{IDEMPOTENCY_HEADER} {key[:80]!r} is not the signed body's alert_id {alert_id[:80]!r}"
            return self._record(Received("bad_body", path, now, None, reason, key), 400)
        with self._lock:  # the signed alert_id decides: headers are not signed
            duplicate = alert_id in self._seen
            self._seen.add(alert_id)
        return self._record(Received("duplicate" if duplicate else "alert", path, now, alert, None, alert_id), 200)

    def _record(self, received: Received, status: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.counts[received.verdict] += 1
            if received.verdict == "alert":
                self.alerts.append(received)
        with self._output_lock:  # one request's output at a time: concurrent prints interleave
            self.on_request(received)
        answer = {"status": received.verdict}
        if received.reason:
            answer["error"] = received.reason
        return status, answer

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> WebhookSink:
        """Serves on a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-sink", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
