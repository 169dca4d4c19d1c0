"""Where simulated traffic goes: JSONL files, stdout, Pub/Sub or Kafka.

Every sink takes valid events (``emit``) and already-encoded malformed messages
(``emit_raw``). Message transports carry ``event_id`` and ``event_time`` as Pub/Sub
attributes or Kafka headers, plus ``schema`` and ``encoding`` so consumers know how to
decode. ``close()`` waits for every delivery and raises SinkError if any failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any, Callable
from urllib.parse import urlparse

import orjson

from streamforge.config import TopicsConfig
from streamforge.schemas import get_schema
from streamforge.timeutil import parse_timestamp, to_millis
from streamforge.transport import (
    STREAM_FILES,
    STREAM_SCHEMAS,
    DeliveryTracker,
    ensure_kafka_topics,
    ensure_pubsub_topics,
    message_attributes,
    pubsub_module,
    pubsub_publisher,
)

__all__ = [
    "FORMATS",
    "FileSink",
    "KafkaSink",
    "LabelWriter",
    "NullSink",
    "PubSubSink",
    "SinkError",
    "StdoutSink",
    "TeeSink",
    "open_sink",
]

FORMATS = ("json", "avro", "confluent")
CLICKSTREAM_FILE, ORDERS_FILE = STREAM_FILES["clickstream"], STREAM_FILES["orders"]
LABELS_FILE, SUMMARY_FILE = "fraud_labels.jsonl", "summary.json"


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
        self.write(
            stream,
            self._encode(stream, event),
            key=event["user_id"],
            event_id=event["event_id"],
            event_time=event["event_time"],
        )

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
    """``DIR/clickstream.jsonl`` and ``DIR/orders.jsonl``, one message per line, buffered. With
    ``follow`` (real-time traffic, a live run's record) flushed at least every ``FLUSH_EVERY_S``,
    so that a reader following the files sees what was sent within a second; a line is complete
    once its newline is there."""

    FLUSH_EVERY_S = 0.5

    def __init__(self, directory: Path, fmt: str = "json", *, follow: bool = False):
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
        self._follow, self._flushed = follow, time.monotonic()

    def emit(self, stream: str, event: dict[str, Any]) -> None:
        self._files[stream].write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        self._wrote()

    def write(self, stream: str, payload: bytes, **_: Any) -> None:
        if b"\n" in payload:
            raise SinkError("a message for a JSONL file contains a newline")
        self._files[stream].write(payload + b"\n")
        self._wrote()

    def _wrote(self) -> None:
        self.written += 1
        if self._follow and time.monotonic() - self._flushed >= self.FLUSH_EVERY_S:
            for f in self._files.values():
                f.flush()
            self._flushed = time.monotonic()

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


class PubSubSink(_Sink):
    """Publishes to the clickstream and orders topics with batching and flow control.

    Honours PUBSUB_EMULATOR_HOST. Against an emulator missing topics are created; against
    Google Cloud the topics must exist (they are deployed by the infra program).
    """

    def __init__(self, project: str, topics: TopicsConfig, fmt: str = "json"):
        super().__init__(fmt)
        pubsub_v1 = pubsub_module(SinkError)
        self.project = project
        self._publisher = pubsub_publisher(
            SinkError,
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=1_000_000, max_latency=0.05),
            publisher_options=pubsub_v1.types.PublisherOptions(
                flow_control=pubsub_v1.types.PublishFlowControl(
                    message_limit=20_000,
                    byte_limit=64 * 1024 * 1024,
                    limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK,
                )
            ),
        )
        self._topics = {
            "clickstream": self._publisher.topic_path(project, topics.clickstream),
            "orders": self._publisher.topic_path(project, topics.orders),
        }
        self._tracker = DeliveryTracker()
        ensure_pubsub_topics(self._publisher, list(self._topics.values()), SinkError)

    def write(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        self._tracker.sending()
        future = self._publisher.publish(
            self._topics[stream], payload, **message_attributes(stream, event_id, event_time, self.format)
        )
        future.add_done_callback(self._on_done)
        self.written += 1

    def _on_done(self, future: Any) -> None:
        error = future.exception()
        self._tracker.done(None if error is None else f"{type(error).__name__}: {error}")

    def close(self) -> None:
        self._publisher.stop()  # publishes every pending batch
        self._tracker.wait(timeout=120)
        self._tracker.check(f"Pub/Sub project {self.project}", SinkError)

    def describe(self) -> str:
        return ", ".join(self._topics.values())


class KafkaSink(_Sink):
    """Produces to the clickstream and orders topics, keyed by user_id (per-user ordering), each
    message's Kafka timestamp its event time (what Beam's Kafka IO takes as event time).

    Missing topics are created with 3 partitions.
    """

    PARTITIONS = 3

    def __init__(self, bootstrap: str, topics: TopicsConfig, fmt: str = "json", *, timeout: float = 10.0):
        super().__init__(fmt)
        self.bootstrap = bootstrap
        self._topics = {"clickstream": topics.clickstream, "orders": topics.orders}
        self._tracker = DeliveryTracker()
        common = ensure_kafka_topics(
            bootstrap, list(self._topics.values()), SinkError, partitions=self.PARTITIONS, timeout=timeout
        )
        from confluent_kafka import Producer

        self._producer = Producer({**common, "linger.ms": 20, "acks": "all", "queue.buffering.max.messages": 200_000})
        self._since_poll = 0

    def write(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        headers = [
            (name, value.encode())
            for name, value in message_attributes(stream, event_id, event_time, self.format).items()
        ]
        timestamp_ms = to_millis(parse_timestamp(event_time))  # Kafka IO's event time on Dataflow (CreateTime)
        self._tracker.sending()
        while True:
            try:
                self._producer.produce(
                    self._topics[stream],
                    value=payload,
                    key=key,
                    headers=headers,
                    timestamp=timestamp_ms,
                    on_delivery=self._on_delivery,
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
        self._tracker.check(
            f"Kafka at {self.bootstrap}" + (f" ({remaining} still queued)" if remaining else ""), SinkError
        )

    def describe(self) -> str:
        return f"kafka {self.bootstrap} topics {', '.join(self._topics.values())}"


class TeeSink(_Sink):
    """Sends every message to ``primary`` and records it in ``record`` (JSON lines): what a live
    run published, kept beside it so that its results can be checked against the events."""

    def __init__(self, primary: _Sink, record: FileSink):  # noqa: D107 - no encoder of its own
        self.format, self.primary, self.record = primary.format, primary, record

    @property
    def written(self) -> int:
        return self.primary.written

    def emit(self, stream: str, event: dict[str, Any]) -> None:
        self.primary.emit(stream, event)
        self.record.emit(stream, event)

    def write(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None:
        self.primary.write(stream, payload, key=key, event_id=event_id, event_time=event_time)
        self.record.write(stream, payload)

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.record.close()

    def describe(self) -> str:
        return f"{self.primary.describe()} (recorded in {self.record.describe()})"


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


def open_sink(output: str, topics: TopicsConfig, fmt: str = "json", *, follow: bool = False) -> _Sink:
    """``file://DIR``, ``pubsub://PROJECT``, ``kafka://HOST:PORT[,HOST:PORT]`` or ``-``; files
    with ``follow`` are flushed as they are written (FileSink)."""
    if output == "-":
        return StdoutSink(fmt)
    parsed = urlparse(output)
    if parsed.scheme == "file":
        directory = (parsed.netloc + parsed.path) or "."
        return FileSink(Path(directory), fmt, follow=follow)
    if parsed.scheme == "pubsub":
        if not parsed.netloc or parsed.path not in ("", "/"):
            raise SinkError(f"'{output}': expected pubsub://PROJECT_ID")
        return PubSubSink(parsed.netloc, topics, fmt)
    if parsed.scheme == "kafka":
        if not parsed.netloc or parsed.path not in ("", "/"):
            raise SinkError(f"'{output}': expected kafka://HOST:PORT[,HOST:PORT]")
        return KafkaSink(parsed.netloc, topics, fmt)
    raise SinkError(f"'{output}': expected file://DIR, pubsub://PROJECT, kafka://HOST:PORT or - for stdout")
