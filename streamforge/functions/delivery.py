"""One POST of one alert to one webhook, and what its outcome means for Pub/Sub.

- ``DELIVERED``: a 2xx answer.
- ``RETRY``: a timeout, a connection error, 408, 429 or a 5xx. The receiver may be fine
  later, so the function fails and Pub/Sub redelivers the alert with backoff (and, after
  the subscription's maximum attempts, to its dead-letter topic).
- ``REJECTED``: any other answer (3xx, 4xx): the request itself is wrong and will be wrong
  next time too, so retrying cannot help. It is logged with the reason and acknowledged.

Connections are pooled per thread (functions-framework serves requests on several threads)
and kept alive across invocations of a warm instance.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

import requests

from streamforge import __version__
from streamforge.functions.webhooks import Webhook

__all__ = ["Outcome", "DeliveryResult", "deliver"]

USER_AGENT = f"streamforge-alert-dispatcher/{__version__}"
_RETRIABLE_STATUS = {408, 429}
_local = threading.local()


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


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
    return session


def deliver(webhook: Webhook, alert: Mapping[str, Any], timeout: float) -> DeliveryResult:
    """POSTs ``alert`` to ``webhook`` once; ``timeout`` bounds the connect and each read."""
    body, headers = webhook.request(alert)
    started = time.perf_counter()

    def result(outcome: Outcome, reason: str, status: int | None = None) -> DeliveryResult:
        return DeliveryResult(webhook.name, outcome, reason, status, (time.perf_counter() - started) * 1000)

    try:
        response = _session().post(webhook.url, data=body, headers=headers, timeout=(timeout, timeout),
                                   allow_redirects=False)
    except requests.Timeout:
        return result(Outcome.RETRY, f"timeout after {timeout:g} s")
    except requests.ConnectionError as exc:
        return result(Outcome.RETRY, f"connection failed: {_root_cause(exc)}")
    except requests.RequestException as exc:  # an invalid URL or header: retrying cannot fix it
        return result(Outcome.REJECTED, f"request could not be sent: {type(exc).__name__}")
    status = response.status_code
    reason = f"HTTP {status}" + (f": {_snippet(response)}" if status >= 300 else "")
    if 200 <= status < 300:
        return result(Outcome.DELIVERED, reason, status)
    if status >= 500 or status in _RETRIABLE_STATUS:
        return result(Outcome.RETRY, reason, status)
    return result(Outcome.REJECTED, reason, status)


def _snippet(response: requests.Response, limit: int = 200) -> str:
    text = response.text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_cause(exc: BaseException) -> str:
    """The innermost error's class and text, without the URL (which may hold a token)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return type(exc).__name__ + (f": {text.split(': ', 1)[-1][:120]}" if text else "")
