"""Reading what reached a Pub/Sub (emulator) subscription in tests."""

from __future__ import annotations

import time
from typing import Any

import orjson


def pull_messages(subscriber: Any, subscription: str, *, count: int, timeout: float) -> list[dict[str, Any]]:
    """At least ``count`` messages (data parsed as JSON, attributes) within ``timeout`` s, acknowledged."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=5)
        for item in response.received_messages:
            received.append({"data": orjson.loads(item.message.data), "attributes": dict(item.message.attributes)})
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    assert len(received) >= count, f"{len(received)} of {count} messages on {subscription} within {timeout:.0f} s"
    return received
