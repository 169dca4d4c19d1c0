"""Publish records as JSON to a Pub/Sub topic (fraud alerts, optionally dead letters).

One DoFn for every runner: Beam's WriteToPubSub is streaming-only on the local runners, and
the alert function downstream only needs the JSON message. ``PUBSUB_EMULATOR_HOST`` is
honoured (the client library reads it). A bundle finishes only when every message in it is
acknowledged by Pub/Sub, so a failed publish fails the bundle and the runner retries it.

The client is made once per process and endpoint (``shared_publisher``) and shared by every
instance: the local runner sets a DoFn up again for every bundle, and making a client there
took 7% of its worker thread and delayed every alert's bundle (a profile of a live run at
1,000 events/s, README "Live latencies").
"""

from __future__ import annotations

import os
import threading
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from google.cloud import pubsub_v1

from streamforge.schemas import get_schema

__all__ = ["PublishJson", "shared_publisher"]

_publishers: dict[str | None, pubsub_v1.PublisherClient] = {}
_publishers_lock = threading.Lock()


def shared_publisher() -> pubsub_v1.PublisherClient:
    """This process's publisher for the endpoint in use (the emulator named by
    ``PUBSUB_EMULATOR_HOST``, else Pub/Sub), made on first use and kept for the process."""
    endpoint = os.environ.get("PUBSUB_EMULATOR_HOST")
    with _publishers_lock:
        publisher = _publishers.get(endpoint)
        if publisher is None:
            publisher = _publishers[endpoint] = pubsub_v1.PublisherClient()
        return publisher


class _Publish(beam.DoFn):
    def __init__(self, topic: str, subject: str, attributes: tuple[str, ...]):
        self.topic, self.subject, self.attributes = topic, subject, attributes

    def setup(self) -> None:
        self.schema = get_schema(self.subject)
        self.publisher = shared_publisher()
        self.published = Metrics.counter("pubsub", f"{self.subject}_published")

    def start_bundle(self) -> None:
        self.futures: list[Any] = []

    def process(self, record: dict[str, Any]) -> None:
        data = self.schema.to_json(record, validate=False)
        attributes = {name: str(record[name]) for name in self.attributes if record.get(name) is not None}
        self.futures.append(self.publisher.publish(self.topic, data, schema=self.subject, **attributes))

    def finish_bundle(self) -> None:
        for future in self.futures:
            future.result(timeout=60)
        self.published.inc(len(self.futures))
        self.futures = []


class PublishJson(beam.PTransform):
    """Records of ``subject`` -> JSON messages on ``topic`` (projects/P/topics/T), with the named
    fields copied into attributes (e.g. alert_id for idempotent consumers)."""

    def __init__(self, topic: str, subject: str, attributes: tuple[str, ...] = ()):
        super().__init__()
        self.topic, self.subject, self.attributes = topic, subject, attributes

    def expand(self, records: beam.PCollection):
        return records | "Publish JSON" >> beam.ParDo(_Publish(self.topic, self.subject, self.attributes))
