"""Where simulated traffic goes: JSONL files, stdout, Pub/Sub or Kafka.

Every sink takes valid events (``emit``) and already-encoded malformed messages
(``emit_raw``). Message transports carry ``event_id`` and ``event_time`` as Pub/Sub
attributes or Kafka headers, plus ``schema`` and ``encoding`` so consumers know how to
decode. ``close()`` waits for every delivery and raises SinkError if any failed.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import IO, Any, Callable
from urllib.parse import urlparse

import orjson

from streamforge.config import TopicsConfig
from streamforge.schemas import get_schema

__all__ = [
    "FORMATS",
    "FileSink",
    "KafkaSink",
    "LabelWriter",
    "NullSink",
    "PubSubSink",
    "SinkError",
    "StdoutSink",
    "open_sink",
]

#: Stream name -> schema subject of its events.
STREAM_SCHEMAS = {"clickstream": "clickstream_event", "orders": "order_event"}
FORMATS = ("json", "avro", "confluent")
CLICKSTREAM_FILE, ORDERS_FILE, LABELS_FILE, SUMMARY_FILE = (
    "clickstream.jsonl",
    "orders.jsonl",
    "fraud_labels.jsonl",
    "summary.json",
)


class SinkError(RuntimeError):
    """An output could not be opened or a delivery failed."""


def _encoder(fmt: str) -> Callable[[str, dict[str, Any]], bytes]:
    if fmt == "json":
        return lambda stream, event: orjson.dumps(event)
    if fmt not in FORMATS:
        raise SinkError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    schemas = {stream: get_schema(subject) for stream, subject in STREAM_SCHEMAS.items()}
    if fmt == "avro":
        return lambda stream, event: schemas[stream].to_avro(event)
    return lambda stream, event: schemas[stream].to_confluent(event)


class _Sink:
    """Shared encoding; subclasses implement ``write``."""

    def __init__(self, fmt: str = "json"):
        self.format = fmt
        self._encode = _encoder(fmt)
        self.written = 0

    def encode(self, stream: str, event: dict[str, Any]) -> bytes:
        return self._encode(stream, event)

    def emit(self, stream: str, event: dict[str, Any]) -> None:
        self.write(stream, self._encode(stream, event), key=event["user_id"], event_id=event["event_id"], event_time=event["event_time"])

    def emit_raw(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        self.write(stream, payload, key=key, event_id=event_id, event_time=event_time)

    def write(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        raise NotImplementedError


class NullSink(_Sink):
    """Encodes and counts, writes nothing (rate calibration, benchmarks)."""

    def emit(self, stream: str, event: dict[str, Any]) -> None:
        self._encode(stream, event)
        self.written += 1

    def write(self, stream: str, payload: bytes, **_: Any) -> None:
        self.written += 1

    def describe(self) -> str:
        return "nowhere (null sink)"


class FileSink(_Sink):
    """``DIR/clickstream.jsonl`` and ``DIR/orders.jsonl``, one message per line."""

    def __init__(self, directory: Path, fmt: str = "json"):
        if fmt != "json":
            raise SinkError("files hold JSON lines; --format avro/confluent needs kafka:// or pubsub://")
        super().__init__(fmt)
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files = {
                "clickstream": open(self.directory / CLICKSTREAM_FILE, "wb", buffering=1 << 20),
                "orders": open(self.directory / ORDERS_FILE, "wb", buffering=1 << 20),
            }
        except OSError as exc:
            raise SinkError(f"cannot write to {self.directory}: {exc.strerror}") from None

    def emit(self, stream: str, event: dict[str, Any]) -> None:
        self._files[stream].write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        self.written += 1

    def write(self, stream: str, payload: bytes, **_: Any) -> None:
        if b"\n" in payload:
            raise SinkError("a message for a JSONL file contains a newline")
        self._files[stream].write(payload + b"\n")
        self.written += 1

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def describe(self) -> str:
        return f"{self.directory}/{{{CLICKSTREAM_FILE},{ORDERS_FILE}}}"


class StdoutSink(_Sink):
    """Both streams interleaved on stdout, one JSON message per line (for jq and pipes)."""

    def __init__(self, fmt: str = "json", out: IO[bytes] | None = None):
        if fmt != "json":
            raise SinkError("stdout carries JSON lines; --format avro/confluent needs kafka:// or pubsub://")
        super().__init__(fmt)
        self._out = out or sys.stdout.buffer

    def write(self, stream: str, payload: bytes, **_: Any) -> None:
        self._out.write(payload + b"\n")
        self.written += 1

    def close(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:  # `streamforge simulate - | head`: the reader left
            pass

    def describe(self) -> str:
        return "stdout"


class _DeliveryTracker:
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

    def check(self, what: str) -> None:
        if self.failed:
            raise SinkError(f"{self.failed} of {self.sent} messages could not be delivered to {what}: {self.first_error}")
        if self.delivered < self.sent:
            raise SinkError(f"{self.sent - self.delivered} of {self.sent} messages to {what} were not confirmed in time")


class PubSubSink(_Sink):
    """Publishes to the clickstream and orders topics with batching and flow control.

    Honours PUBSUB_EMULATOR_HOST. Against an emulator missing topics are created; against
    Google Cloud the topics must exist (they are deployed by the infra program).
    """

    def __init__(self, project: str, topics: TopicsConfig, fmt: str = "json"):
        super().__init__(fmt)
        try:
            from google.api_core import exceptions
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import pubsub_v1
        except ImportError:
            raise SinkError("pubsub:// needs google-cloud-pubsub: pip install 'streamforge[pubsub]'") from None

        self.project = project
        self._exceptions = exceptions
        try:
            self._publisher = pubsub_v1.PublisherClient(
                batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=1_000_000, max_latency=0.05),
                publisher_options=pubsub_v1.types.PublisherOptions(
                    flow_control=pubsub_v1.types.PublishFlowControl(
                        message_limit=20_000,
                        byte_limit=64 * 1024 * 1024,
                        limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK,
                    )
                ),
            )
        except DefaultCredentialsError as exc:
            raise SinkError(
                f"no usable Google Cloud credentials ({exc}): run `gcloud auth application-default login`, "
                "or set PUBSUB_EMULATOR_HOST to use a Pub/Sub emulator"
            ) from None
        self._topics = {
            "clickstream": self._publisher.topic_path(project, topics.clickstream),
            "orders": self._publisher.topic_path(project, topics.orders),
        }
        self._tracker = _DeliveryTracker()
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        for path in self._topics.values():
            self._ensure_topic(path, create=bool(emulator))

    def _ensure_topic(self, path: str, *, create: bool) -> None:
        errors = self._exceptions
        try:
            if create:
                try:
                    self._publisher.create_topic(name=path, timeout=30)
                except errors.AlreadyExists:
                    pass
            else:
                self._publisher.get_topic(topic=path, timeout=30)
        except errors.NotFound:
            raise SinkError(f"Pub/Sub topic {path} does not exist: deploy the infra (pulumi up) or set PUBSUB_EMULATOR_HOST") from None
        except errors.GoogleAPICallError as exc:
            raise SinkError(f"Pub/Sub topic {path}: {exc.message}") from None

    def write(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        self._tracker.sending()
        future = self._publisher.publish(
            self._topics[stream],
            payload,
            event_id=event_id,
            event_time=event_time,
            schema=STREAM_SCHEMAS[stream],
            encoding=self.format,
        )
        future.add_done_callback(self._on_done)
        self.written += 1

    def _on_done(self, future: Any) -> None:
        error = future.exception()
        self._tracker.done(None if error is None else f"{type(error).__name__}: {error}")

    def close(self) -> None:
        self._publisher.stop()  # publishes every pending batch
        self._tracker.wait(timeout=120)
        self._tracker.check(f"Pub/Sub project {self.project}")

    def describe(self) -> str:
        return ", ".join(self._topics.values())


class KafkaSink(_Sink):
    """Produces to the clickstream and orders topics, keyed by user_id (per-user ordering).

    Missing topics are created with 3 partitions.
    """

    PARTITIONS = 3

    def __init__(self, bootstrap: str, topics: TopicsConfig, fmt: str = "json", *, timeout: float = 10.0):
        super().__init__(fmt)
        try:
            from confluent_kafka import KafkaException, Producer
            from confluent_kafka.admin import AdminClient, NewTopic
        except ImportError:
            raise SinkError("kafka:// needs confluent-kafka: pip install 'streamforge[kafka]'") from None

        self.bootstrap = bootstrap
        self._topics = {"clickstream": topics.clickstream, "orders": topics.orders}
        self._tracker = _DeliveryTracker()
        self._errors: list[str] = []
        common = {"bootstrap.servers": bootstrap, "error_cb": self._on_client_error}
        admin = AdminClient(common)
        try:
            existing = admin.list_topics(timeout=timeout).topics
            missing = [t for t in self._topics.values() if t not in existing]
            if missing:
                futures = admin.create_topics([NewTopic(t, num_partitions=self.PARTITIONS, replication_factor=1) for t in missing])
                for topic, future in futures.items():
                    try:
                        future.result(timeout=timeout)
                    except KafkaException as exc:
                        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                            raise
        except KafkaException as exc:
            detail = "; ".join(self._errors) or str(exc)
            raise SinkError(f"Kafka at {bootstrap}: {detail}") from None
        self._producer = Producer({**common, "linger.ms": 20, "acks": "all", "queue.buffering.max.messages": 200_000})
        self._since_poll = 0

    def _on_client_error(self, error: Any) -> None:
        self._errors.append(str(error))

    def write(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        headers = [
            ("event_id", event_id.encode()),
            ("event_time", event_time.encode()),
            ("schema", STREAM_SCHEMAS[stream].encode()),
            ("encoding", self.format.encode()),
        ]
        self._tracker.sending()
        while True:
            try:
                self._producer.produce(
                    self._topics[stream], value=payload, key=key, headers=headers, on_delivery=self._on_delivery
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self.written += 1
        self._since_poll += 1
        if self._since_poll >= 1000:
            self._producer.poll(0)
            self._since_poll = 0

    def _on_delivery(self, error: Any, _message: Any) -> None:
        self._tracker.done(None if error is None else str(error))

    def close(self) -> None:
        remaining = self._producer.flush(120)
        self._tracker.check(f"Kafka at {self.bootstrap}" + (f" ({remaining} still queued)" if remaining else ""))

    def describe(self) -> str:
        return f"kafka {self.bootstrap} topics {', '.join(self._topics.values())}"


class LabelWriter:
    """Fraud ground truth, one JSON record per injected case."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.count = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise SinkError(f"cannot write labels to {self.path}: {exc.strerror}") from None

    def __call__(self, label: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(label, option=orjson.OPT_APPEND_NEWLINE))
        self.count += 1

    def close(self) -> None:
        self._file.close()


def open_sink(output: str, topics: TopicsConfig, fmt: str = "json") -> _Sink:
    """``file://DIR``, ``pubsub://PROJECT``, ``kafka://HOST:PORT[,HOST:PORT]`` or ``-``."""
    if output == "-":
        return StdoutSink(fmt)
    parsed = urlparse(output)
    if parsed.scheme == "file":
        directory = (parsed.netloc + parsed.path) or "."
        return FileSink(Path(directory), fmt)
    if parsed.scheme == "pubsub":
        if not parsed.netloc or parsed.path not in ("", "/"):
            raise SinkError(f"'{output}': expected pubsub://PROJECT_ID")
        return PubSubSink(parsed.netloc, topics, fmt)
    if parsed.scheme == "kafka":
        if not parsed.netloc or parsed.path not in ("", "/"):
            raise SinkError(f"'{output}': expected kafka://HOST:PORT[,HOST:PORT]")
        return KafkaSink(parsed.netloc, topics, fmt)
    raise SinkError(f"'{output}': expected file://DIR, pubsub://PROJECT, kafka://HOST:PORT or - for stdout")
