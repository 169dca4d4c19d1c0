"""Pub/Sub into Beam's local streaming runner: in large batches, by event time, drained on stop.

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
- Redeliveries are dropped by the ``event_id`` attribute within ``dedup_ttl`` of event time,
  as Dataflow's ``id_label`` does (the job is built in that dedup mode), and counted.
- A topic is read through a subscription made for the run and deleted after it (as Beam's
  read of a topic does).
- A batch is acknowledged once the runner has taken it. ``drain()`` stops pulling, hands
  over what was pulled, then ends the stream: the runner advances every watermark to the
  end, fires every open window, writes it and finishes.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator

import apache_beam as beam
import grpc
from apache_beam.portability.api import beam_interactive_api_pb2_grpc, beam_runner_api_pb2
from apache_beam.testing.test_stream import TestStream
from google.api_core import exceptions
from google.cloud import pubsub_v1

from streamforge.config import LocalStreamingConfig
from streamforge.timeutil import parse_timestamp, to_millis

__all__ = ["MESSAGE_CODER", "FeedCounts", "PubSubFeed"]

#: What the feed hands the pipeline: (payload, encoding attribute).
MESSAGE_CODER = beam.coders.TupleCoder([beam.coders.BytesCoder(), beam.coders.StrUtf8Coder()])
_Event = beam_runner_api_pb2.TestStreamPayload.Event
_HEARTBEAT_S = 1.0  # the runner gives up on a TestStream service silent for 30 s
_GATHER_S = 0.25  # how long a batch waits for more pulls to join it
_ACK_CHUNK = 2000
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


@dataclass
class _Input:
    subscription: str
    newest_ms: int | None = None  # the newest event time read
    last_read: float = field(default_factory=time.monotonic)
    watermark_ms: int | None = None  # the last watermark sent
    counts: FeedCounts = field(default_factory=FeedCounts)


class PubSubFeed(beam_interactive_api_pb2_grpc.TestStreamServiceServicer):
    """Feeds ``paths`` (projects/P/subscriptions/S or projects/P/topics/T) to one local pipeline:
    ``start()``, build the pipeline with ``read(pipeline)`` and ``output(path)``, run it;
    ``drain()`` to end it, ``close()`` after."""

    def __init__(self, paths: list[str], settings: LocalStreamingConfig, dedup_ttl: timedelta,
                 subscriber: Any = None, clock=time.monotonic):
        self.inputs = {path: _Input(path) for path in dict.fromkeys(paths)}
        self.batch = settings.pull_batch
        self.lag_ms = int(settings.watermark_lag.total_seconds() * 1000)
        self.idle_s = settings.idle_input.total_seconds()
        self.ttl_ms = int(dedup_ttl.total_seconds() * 1000)
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.clock = clock
        self.endpoint: str | None = None
        self._pulled: queue.Queue[tuple[str, list[Any]]] = queue.Queue(maxsize=16)
        self._pulling = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: grpc.Server | None = None
        # hash((input, event_id)) -> expiry (event time, ms): about 100 bytes an id. The chance
        # that two of 5 million ids share a 64-bit hash (one event dropped as a repeat) is < 1e-6.
        self._seen: dict[int, int] = {}
        self._expiries: list[tuple[int, int]] = []
        self._errors: list[BaseException] = []
        self._outputs: dict[str, Any] | None = None
        self._temporary: list[str] = []

    # -- the pipeline's side -------------------------------------------------------------------

    def read(self, pipeline: beam.Pipeline) -> None:
        """Add the one root step that reads every input to ``pipeline`` (before ``output``)."""
        if self.endpoint is None:
            raise RuntimeError("start() the feed before building the pipeline")
        self._outputs = pipeline | "Read Pub/Sub (local feed)" >> TestStream(
            coder=MESSAGE_CODER, output_tags=list(self.inputs), endpoint=self.endpoint)

    def output(self, path: str) -> beam.PCollection:
        """The ``(data, encoding)`` messages of ``path``, timestamped with their event time."""
        if self._outputs is None:
            raise RuntimeError("read(pipeline) first")
        return self._outputs[path]

    def __reduce__(self) -> tuple[Any, ...]:
        # Beam pickles composite transforms, and the ones that read through the feed hold it,
        # into the pipeline proto; the feed lives in this process only, so its pickle is a name.
        return str, (f"PubSubFeed({self.endpoint})",)

    def counts(self) -> dict[str, FeedCounts]:
        """A copy of each input's counts, by path."""
        return {path: FeedCounts(s.counts.pulled, s.counts.duplicates, s.counts.acked, s.watermark_ms, s.newest_ms)
                for path, s in self.inputs.items()}

    @property
    def errors(self) -> list[BaseException]:
        """What stopped a pull thread (the feed then drains)."""
        return list(self._errors)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PubSubFeed:
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        beam_interactive_api_pb2_grpc.add_TestStreamServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"127.0.0.1:{port}"
        for path, state in self.inputs.items():
            if "/topics/" in path:
                name = f"{path.split('/topics/')[0]}/subscriptions/streamforge-local-{uuid.uuid4().hex[:12]}"
                state.subscription = self.subscriber.create_subscription(name=name, topic=path).name
                self._temporary.append(state.subscription)
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
        for subscription in self._temporary:
            self.subscriber.delete_subscription(subscription=subscription)
        self._temporary.clear()

    def __enter__(self) -> PubSubFeed:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- pulling -------------------------------------------------------------------------------

    def _pull(self, path: str) -> None:
        subscription = self.inputs[path].subscription
        while self._pulling.is_set():
            try:
                response = self.subscriber.pull(request={"subscription": subscription, "max_messages": self.batch},
                                                timeout=2.0)
            except (exceptions.DeadlineExceeded, exceptions.RetryError, exceptions.ServiceUnavailable):
                continue
            except Exception as exc:  # noqa: BLE001 - reported by the runner, which stops the run
                self._errors.append(exc)
                self._pulling.clear()
                return
            if not response.received_messages:
                continue
            while True:
                try:
                    self._pulled.put((path, list(response.received_messages)), timeout=0.5)
                    break
                except queue.Full:
                    if not self._pulling.is_set():
                        return  # not acknowledged: Pub/Sub delivers them again to the next run

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
        last_sent = self.clock()
        while True:
            batches = self._gather()
            if not batches and not self._pulling.is_set() and not any(t.is_alive() for t in self._threads):
                if self._pulled.empty():
                    return
                continue
            acks: dict[str, list[str]] = {}
            for path, elements in self._elements(batches, acks).items():
                for chunk in _chunks(elements):
                    yield _Event(element_event=_Event.AddElements(elements=chunk, tag=path))
                last_sent = self.clock()
            self._acknowledge(acks)
            for path, watermark_ms in self._advanced_watermarks().items():
                yield _Event(watermark_event=_Event.AdvanceWatermark(new_watermark=watermark_ms * 1000, tag=path))
                last_sent = self.clock()
            if self.clock() - last_sent >= _HEARTBEAT_S:
                advance = int((self.clock() - last_sent) * 1_000_000)
                yield _Event(processing_time_event=_Event.AdvanceProcessingTime(advance_duration=advance))
                last_sent = self.clock()

    def _gather(self) -> list[tuple[str, list[Any]]]:
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

    def _elements(self, batches: list[tuple[str, list[Any]]], acks: dict[str, list[str]]) -> dict[str, list[Any]]:
        now = self.clock()
        out: dict[str, list[Any]] = {}
        for path, messages in batches:
            state = self.inputs[path]
            state.counts.pulled += len(messages)
            state.last_read = now
            encode = MESSAGE_CODER.encode
            elements = out.setdefault(path, [])
            ids = acks.setdefault(path, [])
            for received in messages:
                ids.append(received.ack_id)
                message = received.message
                attributes = message.attributes
                event_ms = _event_time_ms(attributes.get("event_time"), message.publish_time)
                event_id = attributes.get("event_id")
                if event_id and self._repeat(hash((path, event_id)), event_ms):
                    state.counts.duplicates += 1
                    continue
                if state.newest_ms is None or event_ms > state.newest_ms:
                    state.newest_ms = event_ms
                elements.append(beam_runner_api_pb2.TestStreamPayload.TimestampedElement(
                    encoded_element=encode((message.data, attributes.get("encoding", "json"))),
                    timestamp=event_ms * 1000))
        return {path: elements for path, elements in out.items() if elements}

    def _repeat(self, key: int, event_ms: int) -> bool:
        if key in self._seen:
            return True
        expiry = event_ms + self.ttl_ms
        self._seen[key] = expiry
        heapq.heappush(self._expiries, (expiry, key))
        return False

    def _acknowledge(self, acks: dict[str, list[str]]) -> None:
        for path, ids in acks.items():
            for start in range(0, len(ids), _ACK_CHUNK):
                chunk = ids[start:start + _ACK_CHUNK]
                self.subscriber.acknowledge(request={"subscription": self.inputs[path].subscription, "ack_ids": chunk})
                self.inputs[path].counts.acked += len(chunk)

    def _advanced_watermarks(self) -> dict[str, int]:
        """Each input's new watermark (ms), where it moved forward."""
        now = self.clock()
        active = [s.newest_ms - self.lag_ms for s in self.inputs.values()
                  if s.newest_ms is not None and now - s.last_read < self.idle_s]
        advanced = {}
        if all(s.newest_ms is None for s in self.inputs.values()):
            return advanced  # nothing read anywhere yet: event time is unknown
        for path, state in self.inputs.items():
            if state.newest_ms is None and now - state.last_read < self.idle_s:
                continue
            own = state.newest_ms - self.lag_ms if state.newest_ms is not None else None
            if now - state.last_read >= self.idle_s:
                if active:
                    own = max(own if own is not None else min(active), min(active))
                else:  # every input quiet: event time goes on with the clock
                    newest = max(s.newest_ms for s in self.inputs.values() if s.newest_ms is not None)
                    quiet_ms = int((now - max(s.last_read for s in self.inputs.values())) * 1000)
                    own = max(own if own is not None else newest - self.lag_ms, newest - self.lag_ms + quiet_ms)
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
        while self._expiries and self._expiries[0][0] <= low:
            _, key = heapq.heappop(self._expiries)
            self._seen.pop(key, None)


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

