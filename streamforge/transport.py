"""Connecting to Pub/Sub and Kafka, shared by every producer (the simulator, the CDC runner,
the ingest function).

``message_attributes`` is the one definition of what an event message carries beside its
payload (Pub/Sub attributes, Kafka headers). The helpers turn a missing client library,
missing credentials or a missing topic into one clear error of the caller's type, create
topics where that is the local convention (on a Pub/Sub emulator, on a Kafka broker), and
count asynchronous deliveries.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = [
    "STREAM_FILES",
    "STREAM_SCHEMAS",
    "DeliveryTracker",
    "ensure_kafka_topics",
    "ensure_pubsub_topics",
    "message_attributes",
    "pubsub_module",
    "pubsub_publisher",
]

#: Event stream (the topic's role in config.topics) -> schema subject of its events.
STREAM_SCHEMAS = {"clickstream": "clickstream_event", "orders": "order_event"}
#: Event stream -> its JSON-lines file in a directory of events (the simulator writes them,
#: the ingest function's file output appends to them, the pipelines and the batch read them).
STREAM_FILES = {"clickstream": "clickstream.jsonl", "orders": "orders.jsonl"}


def message_attributes(stream: str, event_id: str, event_time: str, encoding: str, **extra: str) -> dict[str, str]:
    """What an event message carries beside its payload: ``event_id`` (for dedup), ``event_time``
    (RFC 3339), ``schema`` and ``encoding`` (how to decode it), plus ``extra`` (e.g. received_at)."""
    return {
        "event_id": event_id,
        "event_time": event_time,
        "schema": STREAM_SCHEMAS[stream],
        "encoding": encoding,
        **extra,
    }


def pubsub_module(error: type[Exception]) -> Any:
    """``google.cloud.pubsub_v1``, or ``error`` saying how to install it."""
    try:
        from google.cloud import pubsub_v1
    except ImportError:
        raise error("pubsub:// needs google-cloud-pubsub: pip install 'streamforge[pubsub]'") from None
    return pubsub_v1


def pubsub_publisher(error: type[Exception], **options: Any) -> Any:
    """A ``PublisherClient(**options)``; ``error`` with the remedy if it cannot be made."""
    pubsub_v1 = pubsub_module(error)
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return pubsub_v1.PublisherClient(**options)
    except DefaultCredentialsError as exc:
        raise error(
            f"no usable Google Cloud credentials ({exc}): run `gcloud auth application-default login`, "
            "or set PUBSUB_EMULATOR_HOST to use a Pub/Sub emulator"
        ) from None


def ensure_pubsub_topics(publisher: Any, paths: list[str], error: type[Exception]) -> None:
    """Against an emulator (PUBSUB_EMULATOR_HOST) missing topics are created; against Google
    Cloud they must exist (the infra program deploys them)."""
    from google.api_core import exceptions

    create = bool(os.environ.get("PUBSUB_EMULATOR_HOST"))
    for path in paths:
        try:
            if create:
                try:
                    publisher.create_topic(name=path, timeout=30)
                except exceptions.AlreadyExists:
                    pass
            else:
                publisher.get_topic(topic=path, timeout=30)
        except exceptions.NotFound:
            raise error(
                f"Pub/Sub topic {path} does not exist: deploy the infra (pulumi up) or set PUBSUB_EMULATOR_HOST"
            ) from None
        except exceptions.GoogleAPICallError as exc:
            raise error(f"Pub/Sub topic {path}: {exc.message}") from None


def ensure_kafka_topics(
    bootstrap: str, topics: list[str], error: type[Exception], *, partitions: int = 3, timeout: float = 10.0
) -> dict[str, Any]:
    """Creates missing topics; returns the client settings to build a Producer from (with an
    error callback that keeps librdkafka's complaints for the message of ``error``)."""
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic
    except ImportError:
        raise error("kafka:// needs confluent-kafka: pip install 'streamforge[kafka]'") from None
    complaints: list[str] = []
    common = {"bootstrap.servers": bootstrap, "error_cb": lambda e: complaints.append(str(e))}
    admin = AdminClient(common)
    try:
        existing = admin.list_topics(timeout=timeout).topics
        missing = [t for t in topics if t not in existing]
        if missing:
            futures = admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
            )
            for future in futures.values():
                try:
                    future.result(timeout=timeout)
                except KafkaException as exc:
                    if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                        raise
    except KafkaException as exc:
        raise error(f"Kafka at {bootstrap}: {'; '.join(complaints) or exc}") from None
    return common


class DeliveryTracker:
    """Counts asynchronous deliveries from client threads; keeps the first error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def sending(self) -> None:
        with self._lock:
            self.sent += 1

    def done(self, error: str | None) -> None:
        with self._lock:
            if error is None:
                self.delivered += 1
            else:
                self.failed += 1
                self.first_error = self.first_error or error
            if self.delivered + self.failed >= self.sent:
                self._all_done.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._lock:
            return self._all_done.wait_for(lambda: self.delivered + self.failed >= self.sent, timeout)

    def check(self, what: str, error: type[Exception]) -> None:
        """Raises ``error`` if a delivery to ``what`` failed or is still unconfirmed."""
        if self.failed:
            raise error(f"{self.failed} of {self.sent} messages could not be delivered to {what}: {self.first_error}")
        if self.delivered < self.sent:
            raise error(f"{self.sent - self.delivered} of {self.sent} messages to {what} were not confirmed in time")
