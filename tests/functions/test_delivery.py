"""Alert delivery against hostile receivers and destinations: receivers on 127.0.0.1 that trickle
or flood their answer (a total deadline, a capped read), and webhook URLs that point inside
(metadata server, private ranges) — refused when read, and again when a name resolves there
at delivery time."""

from __future__ import annotations

import socket
import time
import tracemalloc
from typing import Any

import orjson
import pytest

from streamforge.functions.delivery import MAX_ANSWER_BYTES, Outcome, deliver
from streamforge.functions.webhooks import Webhook, WebhookConfigError, parse_webhooks
from streamforge.schemas import get_schema
from tests.support.network import no_network
from tests.support.receivers import RawReceiver, ScriptedReceiver
from tests.support.samples import ALERT

SECRET = "receiver-secret-0123456789"
PY_ALERT = get_schema("fraud_alert").from_json(orjson.dumps(ALERT))


def _webhook(url: str, **options: Any) -> Webhook:
    return Webhook("hook", "json", url, SECRET, **options)


def _trickle(conn: socket.socket, receiver: RawReceiver) -> None:
    """A 200 answer, one byte every 0.25 s: each read is quick, the whole answer takes 12 s."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
        conn.sendall(bytes([byte]))
        receiver.sent += 1
        time.sleep(0.25)


def test_the_timeout_bounds_the_whole_delivery_not_each_read() -> None:
    with RawReceiver(_trickle) as receiver:
        result = deliver(_webhook(receiver.url()), PY_ALERT, timeout=1.0)
    assert (result.outcome, result.reason) == (Outcome.RETRY, "timeout after 1 s")
    assert 900 < result.elapsed_ms < 1800 and receiver.sent < 10


def _flood(conn: socket.socket, receiver: RawReceiver) -> None:
    """A 500 whose body is 30 MB."""
    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 31457280\r\n\r\n")
    chunk = b"x" * 65536
    for _ in range(480):
        conn.sendall(chunk)
        receiver.sent += len(chunk)


def test_at_most_the_cap_of_an_error_answer_is_read() -> None:
    with RawReceiver(_flood) as receiver:
        tracemalloc.start()
        try:
            result = deliver(_webhook(receiver.url()), PY_ALERT, timeout=5.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.outcome is Outcome.RETRY and result.status == 500
    assert result.reason == "HTTP 500: " + "x" * 197 + "..."
    assert peak < 4 * MAX_ANSWER_BYTES  # the old client read all 30 MB (+89 MB at its peak)


def _answer_once_then_close(conn: socket.socket, receiver: RawReceiver) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive by default, then closed


def test_a_kept_alive_connection_the_receiver_closed_is_replaced() -> None:
    with RawReceiver(_answer_once_then_close) as receiver:
        webhook = _webhook(receiver.url())
        assert [deliver(webhook, PY_ALERT, 2.0).outcome for _ in range(3)] == [Outcome.DELIVERED] * 3
    assert receiver.requests == 3


@pytest.mark.parametrize(
    "host, why",
    [
        ("169.254.169.254", "link-local"),
        ("2852039166", "169.254.169.254 is link-local"),  # the metadata server in decimal
        ("0xa9fea9fe", "169.254.169.254 is link-local"),
        ("0251.0376.0251.0376", "169.254.169.254 is link-local"),
        ("[::ffff:169.254.169.254]", "169.254.169.254 is link-local"),
        ("[fe80::1]", "link-local"),
        ("metadata.google.internal", "the metadata server"),
        ("METADATA.google.internal.", "the metadata server"),
        ("0", "unspecified"),  # inet_aton's short form of the IPv4 all-zeros address
        ("[::]", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("10.0.0.5", "private address"),
        ("192.168.1.1", "private address"),
        ("100.64.1.1", "private address"),
        ("[fd00::1]", "private address"),
        ("127.0.0.2", "loopback address"),
    ],
)
def test_webhook_urls_pointing_inside_are_refused_when_read(host, why) -> None:
    env = {
        "STREAMFORGE_WEBHOOKS": orjson.dumps([{"name": "x", "format": "slack", "url": f"https://{host}/x"}]).decode()
    }
    with pytest.raises(WebhookConfigError, match=why):
        parse_webhooks(env)


def test_allow_private_opens_private_ranges_but_never_the_metadata_server() -> None:
    def declare(url: str) -> dict[str, str]:
        return {
            "STREAMFORGE_WEBHOOKS": orjson.dumps(
                [{"name": "x", "format": "slack", "url": url, "allow_private": True}]
            ).decode()
        }

    (webhook,) = parse_webhooks(declare("https://10.0.0.5/x"))
    assert webhook.allow_private
    with pytest.raises(WebhookConfigError, match="link-local"):
        parse_webhooks(declare("https://169.254.169.254/x"))


def _resolver(address: str, calls: list[str]):
    def resolve(host: str, port: int, **_: Any) -> list:
        calls.append(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


@pytest.mark.parametrize(
    "address, allow_private, why",
    [
        ("169.254.169.254", True, "hooks.example.com resolves to 169.254.169.254 is link-local"),
        ("10.1.2.3", False, "hooks.example.com resolves to 10.1.2.3 is a private address"),
        ("127.0.0.1", False, "hooks.example.com resolves to 127.0.0.1 is a loopback address"),
    ],
)
def test_a_name_resolving_inside_at_delivery_time_is_refused_without_connecting(address, allow_private, why) -> None:
    calls: list[str] = []
    with no_network():  # any connection attempt fails the test
        result = deliver(
            _webhook("https://hooks.example.com/x", allow_private=allow_private),
            PY_ALERT,
            2.0,
            resolve=_resolver(address, calls),
        )
    assert result.outcome is Outcome.REJECTED and result.reason.startswith(f"destination refused: {why}")
    assert calls == ["hooks.example.com"]


def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """``localhost`` resolved once, by our resolver: the socket connects to that address."""
    calls: list[str] = []
    with ScriptedReceiver() as receiver, no_network(allow_loopback=True) as attempts:
        url = receiver.url("/ok").replace("127.0.0.1", "localhost")
        result = deliver(_webhook(url), PY_ALERT, 2.0, resolve=_resolver("127.0.0.1", calls))
    assert result.outcome is Outcome.DELIVERED and calls == ["localhost"] and attempts == []
    assert receiver.requests[0].headers["Host"] == f"localhost:{receiver.server.server_address[1]}"


def test_a_url_no_retry_can_fix_is_rejected_not_retried() -> None:
    with ScriptedReceiver() as receiver:
        result = deliver(_webhook(receiver.url("/a b")), PY_ALERT, 2.0)  # a space: http.client refuses the path
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "request could not be sent: InvalidURL")
    assert receiver.requests == []
