"""The local webhook sink against hostile callers, over real sockets on 127.0.0.1: replayed
alerts with another Idempotency-Key, and requests whose framing would block or confuse it."""

from __future__ import annotations

import socket
import time
from typing import Iterator

import orjson
import pytest
import requests

from streamforge.functions.signing import IDEMPOTENCY_HEADER, signature_headers
from streamforge.functions.webhook_sink import WebhookSink

SECRET = "receiver-secret-0123456789"
ALERT = {"alert_id": "a-1", "risk_score": 0.85}
BODY = orjson.dumps(ALERT)


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink([SECRET], read_timeout=0.5) as running:
        yield running


def _post(sink: WebhookSink, body: bytes = BODY, **headers: str | None) -> requests.Response:
    signed = {**signature_headers(SECRET, "a-1", body), **headers}
    return requests.post(
        f"{sink.url}/alerts", data=body, headers={k: v for k, v in signed.items() if v is not None}, timeout=5
    )


def test_a_replay_under_another_idempotency_key_or_none_is_not_a_second_alert(sink) -> None:
    assert (_post(sink).status_code, sink.counts["alert"]) == (200, 1)
    other = _post(sink, **{IDEMPOTENCY_HEADER: "another-key"})
    assert other.status_code == 400 and "is not the signed body's alert_id 'a-1'" in other.json()["error"]
    assert _post(sink, **{IDEMPOTENCY_HEADER: None}).json() == {"status": "duplicate"}
    assert (sink.counts["alert"], sink.counts["duplicate"], sink.counts["bad_body"]) == (1, 1, 1)
    assert [received.body for received in sink.alerts] == [ALERT]


def test_a_signed_body_without_an_alert_id_is_refused(sink) -> None:
    body = orjson.dumps({"risk_score": 0.85})
    answer = _post(sink, body)
    assert (answer.status_code, answer.json()["error"]) == (400, "no alert_id in the signed body")


def _raw(sink: WebhookSink, head: str, body: bytes = b"") -> tuple[bytes, float]:
    """Sends a hand-written request; returns everything the sink sent before closing, and how long it took."""
    host, port = sink.server.server_address[:2]
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        received = b""
        while chunk := conn.recv(65536):  # the sink closes the connection after refusing
            received += chunk
    return received, time.monotonic() - started


@pytest.mark.parametrize(
    "framing, status, reason",
    [
        ("Content-Length: -1\n", 400, b"Content-Length '-1' is not a byte count"),
        ("Content-Length: 1e3\n", 400, b"is not a byte count"),
        ("Content-Length: \xb2\n", 400, b"is not a byte count"),
        ("", 411, b"Content-Length required"),
        ("Transfer-Encoding: chunked\n", 411, b"Transfer-Encoding is not accepted"),
        ("Content-Length: 99999999999\n", 400, b"is not a byte count"),
        ("Content-Length: 2000000\n", 413, b"body too large"),
    ],
)
def test_bad_framing_is_answered_at_once_and_the_connection_closed(sink, framing, status, reason) -> None:
    answer, took = _raw(sink, f"POST /alerts HTTP/1.1\nHost: x\n{framing}")
    assert answer.startswith(f"HTTP/1.0 {status}".encode()) or answer.startswith(f"HTTP/1.1 {status}".encode())
    assert reason in answer and b"Connection: close" in answer
    assert took < 0.4  # before the read timeout: nothing waited for a body
    assert sink.counts["bad_request"] == 1


def test_a_body_that_stops_arriving_frees_the_connection_after_the_read_timeout(sink) -> None:
    answer, took = _raw(sink, "POST /alerts HTTP/1.1\nHost: x\nContent-Length: 100\n", b'{"alert_id"')
    assert answer == b"" and 0.4 < took < 3
    deadline = time.monotonic() + 2
    while sink.counts["bad_request"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.counts["bad_request"] == 1 and sink.counts["alert"] == 0
