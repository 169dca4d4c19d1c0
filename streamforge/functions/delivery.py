"""One POST of one alert to one webhook, and what its outcome means for Pub/Sub.

- ``DELIVERED``: a 2xx answer.
- ``RETRY``: a timeout, a connection error, 408, 429 or a 5xx. The receiver may be fine
  later, so the function fails and Pub/Sub redelivers the alert with backoff (and, after
  the subscription's maximum attempts, to its dead-letter topic).
- ``REJECTED``: any other answer (3xx, 4xx), or a destination the webhook may not reach
  (destinations.py): the request itself is wrong and will be wrong next time too, so
  retrying cannot help. It is logged with the reason and acknowledged.

``timeout`` bounds the whole delivery — resolving, connecting, sending and reading the
answer — not each read: a watchdog shuts the socket down when it runs out, so a receiver
trickling its answer a byte at a time cannot hold the function longer. At most
``MAX_ANSWER_BYTES`` of an answer are read (the reason needs its start only). The host is
resolved and checked at each delivery and the connection made to the address checked.

Connections are kept alive per thread (functions-framework serves requests on several
threads) across invocations of a warm instance, when an answer was read to its end.
Standard library HTTP (http.client): the pinned address and the watchdog need the socket.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping
from urllib.parse import urlsplit

from streamforge import __version__
from streamforge.functions.destinations import DestinationRefused, Resolver, resolve_checked
from streamforge.functions.webhooks import Webhook

__all__ = ["MAX_ANSWER_BYTES", "DeliveryResult", "Outcome", "deliver"]

USER_AGENT = f"streamforge-alert-dispatcher/{__version__}"
#: What is read of an answer at most; a longer one is cut and its connection closed.
MAX_ANSWER_BYTES = 64 * 1024
_RETRIABLE_STATUS = {408, 429}
#: A kept-alive connection the receiver closed meanwhile fails this way before any answer.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_local = threading.local()
_tls = ssl.create_default_context()


class Outcome(str, Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True)
class DeliveryResult:
    webhook: str
    outcome: Outcome
    reason: str  # "HTTP 204", "HTTP 503: <start of the body>", "timeout after 5.0 s", ...
    status: int | None
    elapsed_ms: float


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP or HTTPS to one checked address, with the URL's host as Host header and TLS name."""

    def __init__(self, host: str, port: int, address: str, tls: bool, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, tls

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = _tls.wrap_socket(sock, server_hostname=self.host) if self.tls else sock


class _Watchdog:
    """Shuts ``connection``'s socket down at the deadline, which ends any read or write in progress."""

    def __init__(self, seconds: float):
        self.fired = False
        self.connection: _PinnedConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def watch(self, connection: _PinnedConnection) -> None:
        with self._lock:
            self.connection = connection
            if self.fired:
                raise TimeoutError("deadline passed")

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()


def _pool() -> dict[tuple, _PinnedConnection]:
    pool = getattr(_local, "connections", None)
    if pool is None:
        pool = _local.connections = {}
    return pool


def deliver(
    webhook: Webhook, alert: Mapping[str, Any], timeout: float, *, resolve: Resolver | None = None
) -> DeliveryResult:
    """POSTs ``alert`` to ``webhook`` once, all of it within ``timeout`` seconds.
    ``resolve``: getaddrinfo's stand-in (default: ``socket.getaddrinfo`` at call time)."""
    body, headers = webhook.request(alert)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout

    def result(outcome: Outcome, reason: str, status: int | None = None) -> DeliveryResult:
        return DeliveryResult(webhook.name, outcome, reason, status, (time.perf_counter() - started) * 1000)

    parts = urlsplit(webhook.url)
    tls = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {**headers, "User-Agent": USER_AGENT, "Content-Length": str(len(body))}
    key = (parts.scheme, host, port, webhook.allow_private)
    pool = _pool()
    with _Watchdog(timeout) as watchdog:
        try:
            connection = pool.pop(key, None)
            for attempt in ("kept-alive", "new"):
                if connection is None:
                    attempt = "new"
                    address = resolve_checked(host, port, allow_private=webhook.allow_private, resolve=resolve)[0]
                    connection = _PinnedConnection(host, port, address, tls, max(deadline - time.monotonic(), 0.001))
                watchdog.watch(connection)
                try:
                    connection.request("POST", target, body=body, headers=headers)
                    response = connection.getresponse()
                    break
                except _STALE:
                    connection.close()
                    connection = None
                    if attempt == "new" or watchdog.fired:
                        raise
            answer = response.read(MAX_ANSWER_BYTES)
            if watchdog.fired:  # the answer ended because the socket was shut: not a whole answer
                raise TimeoutError("deadline passed while reading the answer")
        except DestinationRefused as exc:
            return result(Outcome.REJECTED, f"destination refused: {exc}")
        except (http.client.InvalidURL, ValueError) as exc:  # a URL or header no retry can fix
            if connection is not None:
                connection.close()
            return result(Outcome.REJECTED, f"request could not be sent: {type(exc).__name__}")
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                connection.close()
            if watchdog.fired or isinstance(exc, TimeoutError):
                return result(Outcome.RETRY, f"timeout after {timeout:g} s")
            if isinstance(exc, socket.gaierror):
                return result(Outcome.RETRY, f"name resolution failed: {exc.strerror or exc}")
            return result(Outcome.RETRY, f"connection failed: {_root_cause(exc)}")
    if response.isclosed() and not response.will_close and not watchdog.fired:
        pool[key] = connection  # read to its end: the connection can carry the next alert
    else:
        connection.close()
    status = response.status
    reason = f"HTTP {status}" + (f": {_snippet(answer)}" if status >= 300 else "")
    if 200 <= status < 300:
        return result(Outcome.DELIVERED, reason, status)
    if status >= 500 or status in _RETRIABLE_STATUS:
        return result(Outcome.RETRY, reason, status)
    return result(Outcome.REJECTED, reason, status)


def _snippet(answer: bytes, limit: int = 200) -> str:
    text = answer[: limit * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_cause(exc: BaseException) -> str:
    """The innermost error's class and text, without the URL (which may hold a token)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return type(exc).__name__ + (f": {text.split(': ', 1)[-1][:120]}" if text else "")
