"""Pub/Sub and Kafka into Beam's local streaming runner: in large batches, by event time, drained on stop.

Beam's own local Pub/Sub read (the bundle-based DirectRunner's) pulls 10 messages per bundle,
holds an idle subscription's pull for 30 s while the other inputs wait, sets the watermark
from the wall clock and acknowledges on pull: about 25 events/s, a stall when one input goes
quiet, and open windows lost on Ctrl-C (docs/live.md). Locally, this feed replaces only that
read; every step after it is the pipeline that runs on Dataflow.

- One thread per subscription pulls up to ``pull_batch`` messages at a time.
- The runner reads them through TestStream's service endpoint (``TestStream(endpoint=...)``,
  served here on 127.0.0.1): a batch is one element event per input, each element
  ``(data, encoding)`` timestamped from its ``event_time`` attribute, as Dataflow's
  ``timestamp_attribute`` does (the publish time when the attribute is missing or invalid;
  the parse step then judges the payload).
- Each input's watermark trails the newest event time it has read by ``watermark_lag``. An
  input quiet for ``idle_input`` follows the slowest active input; when every input is
  quiet, the watermarks advance with the clock from where the data left them.
- The runner's processing time (its TestStream clock, which only the stream moves) follows
  the wall clock in steps of a second: processing-time triggers (the sessions' EARLY panes)
  fire as they would on Dataflow.
- Redeliveries are dropped by the ``event_id`` attribute within ``dedup_ttl`` of event time,
  as Dataflow's ``id_label`` does (the job is built in that dedup mode), and counted.
- A topic is read through a subscription made for the run and deleted after it (as Beam's
  read of a topic does).
- A batch is acknowledged once the runner has taken it. ``drain()`` stops pulling, hands
  over what was pulled, then ends the stream: the runner advances every watermark to the
  end, fires every open window, writes it and finishes.

``KafkaFeed`` is the same feed over Kafka topics (``kafka://...`` inputs without ``until=end``):
one consumer per topic, assigned every partition (new ones are picked up as they appear),
starting from the group's committed offsets (else ``start``); event time from the
``event_time`` header, else the message's timestamp; the input's event time is the newest
of its slowest active partition, so each partition holds the watermark back until it goes
quiet. What the runner has taken is committed for the group only by ``commit()``, which the
runner calls after a drained run has written everything: a run killed before that is read
again from the last commit, and the keyed warehouse tables make the replay write the same rows.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator, NamedTuple

import apache_beam as beam
import grpc
from apache_beam.portability.api import beam_interactive_api_pb2_grpc, beam_runner_api_pb2
from apache_beam.testing.test_stream import TestStream
from google.api_core import exceptions
from google.cloud import pubsub_v1

from beam_pipelines.common.kafka import (
    DISCOVER_EVERY_S,
    commit_offsets,
    consume,
    kafka_consumer,
    message_event_ms,
    message_item,
    start_positions,
    topic_partitions,
)
from beam_pipelines.common.parse import receipt_ms
from streamforge.config import LocalStreamingConfig
from streamforge.kafka import KafkaUrl
from streamforge.timeutil import parse_timestamp, to_millis

__all__ = ["MESSAGE_CODER", "FeedCounts", "KafkaFeed", "PubSubFeed", "Received"]

#: What the feed hands the pipeline: (payload, encoding attribute, receipt ms or -1 when unknown).
MESSAGE_CODER = beam.coders.TupleCoder(
    [beam.coders.BytesCoder(), beam.coders.StrUtf8Coder(), beam.coders.VarIntCoder()]
)
_Event = beam_runner_api_pb2.TestStreamPayload.Event
_HEARTBEAT_S = 1.0  # processing time's step; the runner gives up on a TestStream service silent for 30 s
_GATHER_S = 0.25  # how long a batch waits for more pulls to join it
_ACK_CHUNK = 2000
_MINUTE_MS = 60_000  # the dedup memory forgets ids a minute of event time at a time
#: Largest element event sent: the runner's gRPC client refuses messages over 4 MB, and a
#: refused message ends its read of the stream (the rest of the run would be lost).
_MAX_EVENT_BYTES = 2 << 20


@dataclass
class FeedCounts:
    """Per input: messages pulled, redeliveries dropped, messages acknowledged (handed to the
    runner, which reads at most a few events ahead of what it has processed), and the
    input's watermark and newest event time (ms since the epoch, None before any data)."""

    pulled: int = 0
    duplicates: int = 0
    acked: int = 0
    watermark_ms: int | None = None
    newest_ms: int | None = None


class Received(NamedTuple):
    """One message as a source hands it to the feed."""

    data: bytes
    encoding: str
    event_id: str | None
    event_ms: int
    partition: int  # 0 for Pub/Sub
    token: Any  # what ``_taken`` needs: a Pub/Sub ack id, a Kafka offset
    received_ms: int = -1  # its received_at attribute (the ingest function's), -1 when it has none


@dataclass
class _Input:
    subscription: str
    newest_by_partition: dict[int, int] = field(default_factory=dict)  # the newest event time read
    read_by_partition: dict[int, float] = field(default_factory=dict)  # when each partition was last read
    last_read: float = field(default_factory=time.monotonic)
    watermark_ms: int | None = None  # the last watermark sent
    counts: FeedCounts = field(default_factory=FeedCounts)

    def saw(self, partition: int, event_ms: int, now: float) -> None:
        newest = self.newest_by_partition.get(partition)
        if newest is None or event_ms > newest:
            self.newest_by_partition[partition] = event_ms
        self.read_by_partition[partition] = now

    def newest_ms(self, now: float, idle_s: float) -> int | None:
        """The input's event time: the newest read in its slowest partition still active
        (every partition's newest when all are quiet); None before any data."""
        if not self.newest_by_partition:
            return None
        active = [ms for p, ms in self.newest_by_partition.items() if now - self.read_by_partition[p] < idle_s]
        return min(active) if active else max(self.newest_by_partition.values())


class _Feed(beam_interactive_api_pb2_grpc.TestStreamServiceServicer):
    """What every feed does: serve the TestStream service, gather what the sources pulled,
    drop redeliveries, advance watermarks by event time, hand over, drain. A source supplies
    ``_start_sources``, ``_fetch(path)`` (a list of ``Received``, empty when there is none
    now), ``_taken(path, tokens)`` and ``_close_sources``."""

    name = "feed"

    def __init__(self, paths: list[str], settings: LocalStreamingConfig, dedup_ttl: timedelta, clock=time.monotonic):
        self.inputs = {path: _Input(path) for path in dict.fromkeys(paths)}
        self.batch = settings.pull_batch
        self.lag_ms = int(settings.watermark_lag.total_seconds() * 1000)
        self.idle_s = settings.idle_input.total_seconds()
        self.ttl_ms = int(dedup_ttl.total_seconds() * 1000)
        self.clock = clock
        self.endpoint: str | None = None
        self._pulled: queue.Queue[tuple[str, list[Received]]] = queue.Queue(maxsize=16)
        self._pulling = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: grpc.Server | None = None
        # hash((input, event_id)) of the ids seen, about 70 bytes an id, forgotten a minute of
        # event time at a time: each id is filed under the minute its ttl ends in (an array of
        # 8-byte keys), and a minute's ids are dropped once every input's watermark has passed
        # its end. A dict of expiries with a heap took 188 bytes an id (11 MB a minute at 1,000
        # events/s, kept for the hour of the ttl). The chance that two of 5 million ids share a
        # 64-bit hash (one event dropped as a repeat) is < 1e-6.
        self._seen: set[int] = set()
        self._expiring: dict[int, array] = {}  # minute (ms // 60,000) -> the keys expiring in it
        self._errors: list[BaseException] = []
        self._outputs: dict[str, Any] | None = None

    # -- the pipeline's side -------------------------------------------------------------------

    def read(self, pipeline: beam.Pipeline) -> None:
        """Add the one root step that reads every input to ``pipeline`` (before ``output``)."""
        if self.endpoint is None:
            raise RuntimeError("start() the feed before building the pipeline")
        self._outputs = pipeline | f"Read {self.name} (local feed)" >> TestStream(
            coder=MESSAGE_CODER, output_tags=list(self.inputs), endpoint=self.endpoint
        )

    def output(self, path: str) -> beam.PCollection:
        """The ``(data, encoding, received_ms)`` messages of ``path``, timestamped with their event time."""
        if self._outputs is None:
            raise RuntimeError("read(pipeline) first")
        return self._outputs[path]

    def __reduce__(self) -> tuple[Any, ...]:
        # Beam pickles composite transforms, and the ones that read through the feed hold it,
        # into the pipeline proto; the feed lives in this process only, so its pickle is a name.
        return str, (f"{type(self).__name__}({self.endpoint})",)

    def counts(self) -> dict[str, FeedCounts]:
        """A copy of each input's counts, by path."""
        now = self.clock()
        return {
            path: FeedCounts(
                s.counts.pulled, s.counts.duplicates, s.counts.acked, s.watermark_ms, s.newest_ms(now, self.idle_s)
            )
            for path, s in self.inputs.items()
        }

    @property
    def errors(self) -> list[BaseException]:
        """What stopped a pull thread (the feed then drains)."""
        return list(self._errors)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> _Feed:
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        beam_interactive_api_pb2_grpc.add_TestStreamServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"127.0.0.1:{port}"
        self._start_sources()
        self._pulling.set()
        for path in self.inputs:
            thread = threading.Thread(target=self._pull, args=(path,), name=f"pull {path}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def drain(self) -> None:
        """Stop pulling; the stream ends once what was pulled is handed over."""
        self._pulling.clear()

    def close(self) -> None:
        self.drain()
        for thread in self._threads:
            thread.join(timeout=30)
        if self._server is not None:
            self._server.stop(grace=None).wait()
        self._close_sources()

    def __enter__(self) -> _Feed:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the sources ---------------------------------------------------------------------------

    def _start_sources(self) -> None:
        raise NotImplementedError

    def _fetch(self, path: str) -> list[Received]:
        raise NotImplementedError

    def _taken(self, path: str, tokens: list[Any]) -> None:
        raise NotImplementedError

    def _close_sources(self) -> None:
        raise NotImplementedError

    def _pull(self, path: str) -> None:
        while self._pulling.is_set():
            try:
                received = self._fetch(path)
            except Exception as exc:  # noqa: BLE001 - reported by the runner, which stops the run
                self._errors.append(exc)
                self._pulling.clear()
                return
            if not received:
                continue
            while True:
                try:
                    self._pulled.put((path, received), timeout=0.5)
                    break
                except queue.Full:
                    if not self._pulling.is_set():
                        return  # never handed over: not acknowledged (Pub/Sub) or committed (Kafka)

    # -- the TestStream service ----------------------------------------------------------------

    def Events(self, request: Any, context: Any) -> Iterator[Any]:  # noqa: N802 - the gRPC method name
        """The event stream the runner reads: elements, watermarks, heartbeats; ends when drained.

        If the runner stops reading before that (its read failed), nothing more is pulled and
        the batch in hand is not acknowledged: Pub/Sub delivers it again."""
        ended = False
        try:
            yield from self._events()
            ended = True
        finally:
            if not ended and self._pulling.is_set():
                self._errors.append(RuntimeError("the runner stopped reading the feed"))
                self._pulling.clear()

    def _events(self) -> Iterator[Any]:
        advanced = self.clock()  # the runner's processing time, which only this stream moves
        while True:
            batches = self._gather()
            if not batches and not self._pulling.is_set() and not any(t.is_alive() for t in self._threads):
                if self._pulled.empty():
                    return
                continue
            taken: dict[str, list[Any]] = {}
            # the smaller input first: orders (a twentieth of the events) reach the fraud job
            # before the clicks gathered with them are queued ahead in the runner's one queue
            for path, elements in sorted(self._elements(batches, taken).items(), key=lambda item: len(item[1])):
                for chunk in _chunks(elements):
                    yield _Event(element_event=_Event.AddElements(elements=chunk, tag=path))
            for path, tokens in taken.items():
                self._taken(path, tokens)
                self.inputs[path].counts.acked += len(tokens)
            for path, watermark_ms in self._advanced_watermarks().items():
                yield _Event(watermark_event=_Event.AdvanceWatermark(new_watermark=watermark_ms * 1000, tag=path))
            # Processing time follows the clock, a step at least every second (what fires
            # processing-time triggers: the sessions' EARLY panes); the step is also the
            # heartbeat a quiet stream needs.
            now = self.clock()
            if now - advanced >= _HEARTBEAT_S:
                advance = int((now - advanced) * 1_000_000)
                yield _Event(processing_time_event=_Event.AdvanceProcessingTime(advance_duration=advance))
                advanced = now

    def _gather(self) -> list[tuple[str, list[Received]]]:
        batches = []
        try:
            batches.append(self._pulled.get(timeout=0.2))
        except queue.Empty:
            return batches
        deadline = time.monotonic() + _GATHER_S
        while len(batches) < 16:
            try:
                batches.append(self._pulled.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batches

    def _elements(self, batches: list[tuple[str, list[Received]]], taken: dict[str, list[Any]]) -> dict[str, list[Any]]:
        now = self.clock()
        out: dict[str, list[Any]] = {}
        encode = MESSAGE_CODER.encode
        element = beam_runner_api_pb2.TestStreamPayload.TimestampedElement
        for path, messages in batches:
            state = self.inputs[path]
            state.counts.pulled += len(messages)
            state.last_read = now
            elements = out.setdefault(path, [])
            tokens = taken.setdefault(path, [])
            for message in messages:
                tokens.append(message.token)
                if message.event_id and self._repeat(hash((path, message.event_id)), message.event_ms):
                    state.counts.duplicates += 1
                    continue
                state.saw(message.partition, message.event_ms, now)
                elements.append(
                    element(
                        encoded_element=encode((message.data, message.encoding, message.received_ms)),
                        timestamp=message.event_ms * 1000,
                    )
                )
        return {path: elements for path, elements in out.items() if elements}

    def _repeat(self, key: int, event_ms: int) -> bool:
        if key in self._seen:
            return True
        self._seen.add(key)
        minute = (event_ms + self.ttl_ms) // _MINUTE_MS
        keys = self._expiring.get(minute)
        if keys is None:
            keys = self._expiring[minute] = array("q")
        keys.append(key)
        return False

    def _advanced_watermarks(self) -> dict[str, int]:
        """Each input's new watermark (ms), where it moved forward."""
        now = self.clock()
        newest = {path: s.newest_ms(now, self.idle_s) for path, s in self.inputs.items()}
        active = [
            newest[path] - self.lag_ms
            for path, s in self.inputs.items()
            if newest[path] is not None and now - s.last_read < self.idle_s
        ]
        advanced = {}
        if all(ms is None for ms in newest.values()):
            return advanced  # nothing read anywhere yet: event time is unknown
        for path, state in self.inputs.items():
            if newest[path] is None and now - state.last_read < self.idle_s:
                continue
            own = newest[path] - self.lag_ms if newest[path] is not None else None
            if now - state.last_read >= self.idle_s:
                if active:
                    own = max(own if own is not None else min(active), min(active))
                else:  # every input quiet: event time goes on with the clock
                    latest = max(ms for ms in newest.values() if ms is not None)
                    quiet_ms = int((now - max(s.last_read for s in self.inputs.values())) * 1000)
                    own = max(own if own is not None else latest - self.lag_ms, latest - self.lag_ms + quiet_ms)
            if own is not None and (state.watermark_ms is None or own > state.watermark_ms):
                state.watermark_ms = own
                advanced[path] = own
        self._forget_expired()
        return advanced

    def _forget_expired(self) -> None:
        marks = [s.watermark_ms for s in self.inputs.values() if s.watermark_ms is not None]
        if not marks:
            return
        low = min(marks)
        for minute in [m for m in self._expiring if (m + 1) * _MINUTE_MS <= low]:
            self._seen.difference_update(self._expiring.pop(minute))


class PubSubFeed(_Feed):
    """Feeds ``paths`` (projects/P/subscriptions/S or projects/P/topics/T) to one local pipeline:
    ``start()``, build the pipeline with ``read(pipeline)`` and ``output(path)``, run it;
    ``drain()`` to end it, ``close()`` after."""

    name = "Pub/Sub"

    def __init__(
        self,
        paths: list[str],
        settings: LocalStreamingConfig,
        dedup_ttl: timedelta,
        subscriber: Any = None,
        clock=time.monotonic,
    ):
        super().__init__(paths, settings, dedup_ttl, clock)
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self._temporary: list[str] = []

    def _start_sources(self) -> None:
        for path, state in self.inputs.items():
            if "/topics/" in path:
                name = f"{path.split('/topics/')[0]}/subscriptions/streamforge-local-{uuid.uuid4().hex[:12]}"
                state.subscription = self.subscriber.create_subscription(name=name, topic=path).name
                self._temporary.append(state.subscription)

    def _fetch(self, path: str) -> list[Received]:
        try:
            response = self.subscriber.pull(
                request={"subscription": self.inputs[path].subscription, "max_messages": self.batch}, timeout=2.0
            )
        except (exceptions.DeadlineExceeded, exceptions.RetryError, exceptions.ServiceUnavailable):
            return []
        received = []
        for item in response.received_messages:
            message = item.message
            attributes = message.attributes
            received.append(
                Received(
                    message.data,
                    attributes.get("encoding", "json"),
                    attributes.get("event_id"),
                    _event_time_ms(attributes.get("event_time"), message.publish_time),
                    0,
                    item.ack_id,
                    receipt_ms(attributes.get("received_at")) or -1,
                )
            )
        return received

    def _taken(self, path: str, tokens: list[Any]) -> None:
        for start in range(0, len(tokens), _ACK_CHUNK):
            self.subscriber.acknowledge(
                request={"subscription": self.inputs[path].subscription, "ack_ids": tokens[start : start + _ACK_CHUNK]}
            )

    def _close_sources(self) -> None:
        for subscription in self._temporary:
            self.subscriber.delete_subscription(subscription=subscription)
        self._temporary.clear()


class KafkaFeed(_Feed):
    """Feeds Kafka topics (``inputs``: path -> ``KafkaUrl``) to one local pipeline, as
    PubSubFeed does; ``commit()`` after a drained run (module docstring)."""

    name = "Kafka"
    DISCOVER_EVERY_S = DISCOVER_EVERY_S

    def __init__(
        self, inputs: dict[str, KafkaUrl], settings: LocalStreamingConfig, dedup_ttl: timedelta, clock=time.monotonic
    ):
        super().__init__(list(inputs), settings, dedup_ttl, clock)
        self.urls = inputs
        self._clients: dict[str, Any] = {}
        self._positions: dict[str, dict[int, int]] = {path: {} for path in inputs}  # partition -> next offset
        self._assigned: dict[str, set[int]] = {path: set() for path in inputs}
        self._discovered: dict[str, float] = {}

    def _start_sources(self) -> None:
        for path, url in self.urls.items():
            self._clients[path] = kafka_consumer(url)
            self._assign_new_partitions(path)

    def _assign_new_partitions(self, path: str) -> None:
        url, client = self.urls[path], self._clients[path]
        self._discovered[path] = time.monotonic()
        partitions = sorted(set(topic_partitions(client, url)) - self._assigned[path])
        if partitions:
            client.consumer.incremental_assign(start_positions(client, url, partitions))
            self._assigned[path].update(partitions)

    def _fetch(self, path: str) -> list[Received]:
        if time.monotonic() - self._discovered[path] >= self.DISCOVER_EVERY_S:
            self._assign_new_partitions(path)
        received = []
        for message in consume(self._clients[path], self.urls[path], self.batch, timeout=0.5):
            data, encoding, event_id = message_item(message)
            received.append(
                Received(
                    data,
                    encoding,
                    event_id,
                    message_event_ms(message),
                    message.partition(),
                    (message.partition(), message.offset()),
                )
            )
        return received

    def _taken(self, path: str, tokens: list[Any]) -> None:
        positions = self._positions[path]
        for partition, offset in tokens:
            if offset + 1 > positions.get(partition, -1):
                positions[partition] = offset + 1

    def commit(self) -> dict[str, dict[int, int]]:
        """Commit what the runner took, for each input's group; returns the offsets committed."""
        committed = {}
        for path, positions in self._positions.items():
            if positions:
                commit_offsets(self._clients[path], self.urls[path], positions)
                committed[path] = dict(positions)
        return committed

    def _close_sources(self) -> None:
        for client in self._clients.values():
            client.consumer.close()
        self._clients.clear()


def _chunks(elements: list[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    size = 0
    for element in elements:
        if chunk and size + len(element.encoded_element) + 16 > _MAX_EVENT_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(element)
        size += len(element.encoded_element) + 16
    if chunk:
        yield chunk


def _event_time_ms(attribute: str | None, publish_time: Any) -> int:
    if attribute:
        try:
            return to_millis(parse_timestamp(attribute))
        except ValueError:
            pass
    return int(publish_time.timestamp() * 1000)
