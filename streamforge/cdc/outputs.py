"""Where the local CDC runner sends change events, in the shape Debezium Server publishes.

Debezium Server's Pub/Sub sink publishes one message per change: the data is the JSON change
event, the ordering key is the record key (the row's primary key as JSON, e.g.
``{"id":42}``; ``null.key`` for keyless records), no attributes, one topic per table. It
declares no tombstone support, so the tombstone that follows a delete is not published.

- ``pubsub://PROJECT``: exactly that (ordering on, as configured).
- ``kafka://HOST:PORT``: key = the record key, value = the change event; tombstones are
  kept as null values, as Kafka sinks do.
- ``file://DIR``: ``DIR/<topic>.jsonl``, one change event per line, a tombstone as ``null``.

``publish`` returns once every message of the batch is delivered (Pub/Sub acknowledged,
Kafka acknowledged, file flushed), so the engine commits offsets only for delivered changes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import IO, Any, NamedTuple

from streamforge.transport import (
    DeliveryTracker,
    ensure_kafka_topics,
    ensure_pubsub_topics,
    pubsub_module,
    pubsub_publisher,
)

__all__ = ["ChangeMessage", "Output", "OutputError", "open_output"]


class OutputError(RuntimeError):
    """An output could not be opened or a delivery failed."""


class ChangeMessage(NamedTuple):
    topic: str
    key: str | None  # the Debezium record key (JSON), None for keyless tables
    value: str | None  # the change event (JSON); None for a tombstone


class Output(ABC):
    def __init__(self) -> None:
        self.published: Counter[str] = Counter()  # per topic
        self.tombstones_skipped = 0

    @abstractmethod
    def publish(self, messages: list[ChangeMessage]) -> None:
        """Deliver ``messages`` in order; return when all are delivered (raise OutputError if not)."""

    def close(self) -> None:  # noqa: B027 - most outputs have nothing to release
        pass

    @abstractmethod
    def describe(self) -> str: ...


class PubSubOutput(Output):
    def __init__(self, project: str, topics: list[str], *, ordering: bool, null_key: str):
        super().__init__()
        pubsub_v1 = pubsub_module(OutputError)
        self.project, self.ordering, self.null_key = project, ordering, null_key
        self._publisher = pubsub_publisher(
            OutputError,
            # as Debezium Server publishes: a batch as soon as it is handed over
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=9_500_000, max_latency=0.01),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=ordering),
        )
        self._paths = {topic: self._publisher.topic_path(project, topic) for topic in topics}
        ensure_pubsub_topics(self._publisher, list(self._paths.values()), OutputError)

    def publish(self, messages: list[ChangeMessage]) -> None:
        tracker = DeliveryTracker()
        futures = []
        for message in messages:
            if message.value is None:
                self.tombstones_skipped += 1
                continue
            path = self._paths.get(message.topic)
            if path is None:
                path = self._paths[message.topic] = self._publisher.topic_path(self.project, message.topic)
                ensure_pubsub_topics(self._publisher, [path], OutputError)
            ordering_key = (message.key if message.key is not None else self.null_key) if self.ordering else ""
            tracker.sending()
            futures.append(
                (
                    message.topic,
                    ordering_key,
                    self._publisher.publish(path, message.value.encode(), ordering_key=ordering_key),
                )
            )
        for topic, ordering_key, future in futures:
            try:
                future.result(timeout=60)
            except Exception as exc:  # the client raises many kinds; all mean "not delivered"
                tracker.done(f"{type(exc).__name__}: {exc}")
                if ordering_key:  # a failed ordered publish pauses its key until resumed
                    self._publisher.resume_publish(self._paths[topic], ordering_key)
            else:
                tracker.done(None)
                self.published[topic] += 1
        tracker.check(f"Pub/Sub project {self.project}", OutputError)

    def close(self) -> None:
        self._publisher.stop()

    def describe(self) -> str:
        return (
            f"Pub/Sub project {self.project} (ordering key: the primary key)"
            if self.ordering
            else f"Pub/Sub project {self.project}"
        )


class KafkaOutput(Output):
    def __init__(self, bootstrap: str, topics: list[str]):
        super().__init__()
        self.bootstrap = bootstrap
        self._common = ensure_kafka_topics(bootstrap, topics, OutputError, partitions=3)
        self._known = set(topics)
        from confluent_kafka import Producer

        self._producer = Producer({**self._common, "linger.ms": 5, "acks": "all", "enable.idempotence": True})

    def publish(self, messages: list[ChangeMessage]) -> None:
        tracker = DeliveryTracker()
        for message in messages:
            if message.topic not in self._known:
                ensure_kafka_topics(self.bootstrap, [message.topic], OutputError, partitions=3)
                self._known.add(message.topic)
            tracker.sending()
            self._producer.produce(
                message.topic,
                key=None if message.key is None else message.key.encode(),
                value=None if message.value is None else message.value.encode(),
                on_delivery=lambda error, _msg, topic=message.topic: self._delivered(tracker, topic, error),
            )
        self._producer.flush(60)
        tracker.check(f"Kafka at {self.bootstrap}", OutputError)

    def _delivered(self, tracker: DeliveryTracker, topic: str, error: Any) -> None:
        tracker.done(None if error is None else str(error))
        if error is None:
            self.published[topic] += 1

    def describe(self) -> str:
        return f"Kafka at {self.bootstrap}"


class FileOutput(Output):
    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to {directory}: {exc.strerror}") from None
        self._files: dict[str, IO[bytes]] = {}

    def publish(self, messages: list[ChangeMessage]) -> None:
        touched = set()
        for message in messages:
            handle = self._files.get(message.topic)
            if handle is None:
                handle = self._files[message.topic] = open(self.directory / f"{message.topic}.jsonl", "ab")
            handle.write(b"null\n" if message.value is None else message.value.encode() + b"\n")
            touched.add(message.topic)
            self.published[message.topic] += 1
        for topic in touched:
            self._files[topic].flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()

    def describe(self) -> str:
        return f"JSONL files in {self.directory}"


def open_output(url: str, topics: list[str], *, ordering: bool = True, null_key: str = "default") -> Output:
    """``pubsub://PROJECT``, ``kafka://HOST:PORT`` or ``file://DIR`` (see the module docstring)."""
    if url.startswith("pubsub://"):
        project = url[len("pubsub://") :]
        if not project or "/" in project:
            raise OutputError(f"--output {url}: expected pubsub://PROJECT")
        return PubSubOutput(project, topics, ordering=ordering, null_key=null_key)
    if url.startswith("kafka://"):
        bootstrap = url[len("kafka://") :]
        if ":" not in bootstrap:
            raise OutputError(f"--output {url}: expected kafka://HOST:PORT")
        return KafkaOutput(bootstrap, topics)
    if url.startswith("file://"):
        directory = url[len("file://") :]
        if not directory:
            raise OutputError(f"--output {url}: expected file://DIR")
        return FileOutput(Path(os.path.expanduser(directory)))
    raise OutputError(f"--output {url}: expected pubsub://PROJECT, kafka://HOST:PORT or file://DIR")
