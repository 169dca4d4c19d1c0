"""A local webhook receiver for demos and tests: verifies signatures, keeps each alert once.

``POST /slack`` takes Slack-format messages (unsigned, as Slack's own endpoint would); any
other path takes signed generic JSON alerts: a bad or missing signature is answered 401 with
the reason, a body that is not JSON 400, an Idempotency-Key seen before 200 "duplicate".
Every request is handed to ``on_request`` with what was decided, so the CLI can print it.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Received:
    """One request: ``verdict`` is alert, duplicate, slack, bad_signature or bad_body."""

    verdict: str
    path: str
    received_at: float  # time.time()
    body: Any  # the parsed JSON, or None
    reason: str | None = None
    idempotency_key: str | None = None


class WebhookSink:
    def __init__(self, secrets: Sequence[str], *, host: str = LOOPBACK, port: int = 0,
                 tolerance: float = DEFAULT_TOLERANCE_SECONDS, on_request: Callable[[Received], None] | None = None):
        self.secrets, self.tolerance = list(secrets), tolerance
        self.on_request = on_request or (lambda received: None)
        self.alerts: list[Received] = []
        self.counts = {"alert": 0, "duplicate": 0, "slack": 0, "bad_signature": 0, "bad_body": 0}
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
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

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self._answer(413, {"error": "body too large"})
                    return
                status, answer = sink.receive(self.path, self.headers, self.rfile.read(length))
                self._answer(status, answer)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
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
        with self._lock:
            duplicate = key is not None and key in self._seen
            if key is not None:
                self._seen.add(key)
        return self._record(Received("duplicate" if duplicate else "alert", path, now, alert, None, key), 200)

    def _record(self, received: Received, status: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.counts[received.verdict] += 1
            if received.verdict == "alert":
                self.alerts.append(received)
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
