"""Where the ingest function publishes accepted events: Pub/Sub topics, or local JSONL files.

``STREAMFORGE_INGEST_OUTPUT``:

- ``pubsub://PROJECT``: the clickstream and orders topics of ``config.topics`` in PROJECT,
  each message with the attributes every StreamForge producer sets (event_id, event_time,
  schema, encoding) plus received_at. With ``PUBSUB_EMULATOR_HOST`` set, missing topics are
  created; on Google Cloud they must exist (the infra program deploys them).
- ``file://DIR``: ``DIR/clickstream.jsonl`` and ``DIR/orders.jsonl`` (payloads only), the
  layout the simulator writes and ``streamforge run --input file://DIR`` reads.

``publish`` is synchronous: it returns when every message is confirmed or has failed, so a
request is answered only with what really reached the output.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence
from urllib.parse import urlsplit

from streamforge.config import TopicsConfig
from streamforge.transport import STREAM_FILES, ensure_pubsub_topics, pubsub_module, pubsub_publisher

__all__ = ["OUTPUT_ENV", "EventOutput", "FileOutput", "Message", "OutputError", "PubSubOutput", "open_output"]

OUTPUT_ENV = "STREAMFORGE_INGEST_OUTPUT"


class OutputError(RuntimeError):
    """The output is misconfigured or cannot be opened."""


@dataclass(frozen=True)
class Message:
    stream: str  # "clickstream" or "orders"
    payload: bytes
    attributes: dict[str, str]


class EventOutput(Protocol):
    def publish(self, messages: Sequence[Message], timeout: float) -> list[str | None]:
        """Per message: None once confirmed, else why it failed."""

    def describe(self) -> str: ...


class PubSubOutput:
    def __init__(self, project: str, topics: TopicsConfig):
        pubsub_v1 = pubsub_module(OutputError)
        # Requests wait for their events, so batches are sent after at most 5 ms.
        self._publisher = pubsub_publisher(
            OutputError,
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=4_000_000, max_latency=0.005),
        )
        self._topics = {
            "clickstream": self._publisher.topic_path(project, topics.clickstream),
            "orders": self._publisher.topic_path(project, topics.orders),
        }
        if os.environ.get("PUBSUB_EMULATOR_HOST"):
            ensure_pubsub_topics(self._publisher, list(self._topics.values()), OutputError)

    def publish(self, messages: Sequence[Message], timeout: float) -> list[str | None]:
        futures = [self._publisher.publish(self._topics[m.stream], m.payload, **m.attributes) for m in messages]
        deadline = time.monotonic() + timeout
        errors: list[str | None] = []
        for future in futures:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                errors.append(None)
            except TimeoutError:
                errors.append(f"Pub/Sub did not confirm within {timeout:g} s")
            except Exception as exc:  # the client raises API, transport and auth errors alike
                errors.append(f"Pub/Sub publish failed: {type(exc).__name__}: {exc}")
        return errors

    def describe(self) -> str:
        return ", ".join(self._topics.values())


class FileOutput:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files = {stream: open(self.directory / name, "ab") for stream, name in STREAM_FILES.items()}
        except OSError as exc:
            raise OutputError(f"cannot write to {self.directory}: {exc.strerror}") from None
        self._lock = threading.Lock()

    def publish(self, messages: Sequence[Message], timeout: float) -> list[str | None]:
        with self._lock:
            try:
                for message in messages:
                    self._files[message.stream].write(message.payload + b"\n")
                for f in self._files.values():
                    f.flush()
            except OSError as exc:
                return [f"write to {self.directory} failed: {exc.strerror}"] * len(messages)
        return [None] * len(messages)

    def describe(self) -> str:
        return f"{self.directory}/{{{','.join(STREAM_FILES.values())}}}"


def open_output(url: str, topics: TopicsConfig) -> EventOutput:
    parts = urlsplit(url)
    if parts.scheme == "pubsub" and parts.netloc and parts.path in ("", "/"):
        return PubSubOutput(parts.netloc, topics)
    if parts.scheme == "file" and (parts.netloc or parts.path):
        return FileOutput(Path(parts.netloc + parts.path))
    raise OutputError(f"{OUTPUT_ENV}={url!r}: expected pubsub://PROJECT or file://DIR")
