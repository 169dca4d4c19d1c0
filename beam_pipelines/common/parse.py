"""Decode, validate and deduplicate: the first step of every job.

Every message is decoded and validated with the foundation's schema: JSON lines from files;
from Pub/Sub, JSON, Avro or the Confluent wire format as the message's ``encoding`` attribute
says. A message that fails (bad JSON or Avro, missing or invalid fields, unknown enum values,
an unknown encoding, an event time too far ahead of the clock) becomes a dead letter with the
reason; a valid event whose event_id was seen before is counted as a duplicate and dropped.
Event times that cannot be real are dead letters too, the same way in batch and streaming:
before ``pipelines.min_event_time`` (epoch zero is a missing clock, not a time; reason
``too_old``), or older than ``pipelines.max_event_age`` when StreamForge received it from
its producer: the ``received_at`` attribute the ingest function sets. Messages without it
(the simulator's, files, Kafka, a backend publishing directly) may be replays of history,
where a publish time says nothing about the event, so only the floor applies to them.
So for every input: ``read = parsed + dead_lettered`` and ``parsed = unique + duplicates``,
and the Beam counters of namespace ``<stream>`` say so.

Deduplication has three expansions with the same result:

- Dataflow streaming from Pub/Sub: Pub/Sub's ``id_label`` (``event_id`` attribute) drops
  redeliveries before the pipeline sees them (io.ReadMessages).
- Other streaming runners, and Kafka on Dataflow: ``DropRepeats`` (dedup.py) remembers each event_id for
  ``pipelines.dedup_ttl`` of event time in keyed state, then an event-time timer clears it.
- Bounded input (batch): batches of payloads are split by a hash of the event_id into a
  fixed number of shards and grouped; each shard then sees every copy of its events. On a
  bounded input the watermark stays at the start until all of it is read, so a TTL could not
  expire anything and grouping is the same computation. Grouping batches instead of single
  events matters on the local runner, where each element through a GroupByKey costs about
  10 us and per-key user state about 100 us (docs/pipelines.md, "Performance").
"""

from __future__ import annotations

import hashlib
import pickle
import time
import zlib
from datetime import datetime, timedelta
from typing import Any, Iterable, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.coders.coder_impl import CallbackCoderImpl
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.common.dead_letters import dead_letter, from_invalid_event
from beam_pipelines.common.dedup import DropRepeats
from beam_pipelines.common.packing import Packed, pack, unpack
from streamforge.schemas import FieldError, InvalidEvent, get_schema, registry
from streamforge.schemas.remote import RemoteSchemaError, RemoteSchemas, header_schema_id
from streamforge.timeutil import format_duration, format_millis, millis_to_datetime, parse_timestamp, to_millis
from streamforge.transport import STREAM_SCHEMAS as STREAM_SUBJECTS

__all__ = [
    "DEAD_LETTER",
    "ENCODINGS",
    "DedupMode",
    "EventBatch",
    "EventParser",
    "ParseEvents",
    "Parsed",
    "event_id_key",
    "now_ms",
    "payload_and_encoding",
    "receipt_ms",
]

DEAD_LETTER = "dead_letter"
#: Message encodings the parse step decodes (the ``encoding`` attribute of a Pub/Sub message).
ENCODINGS = ("json", "avro", "confluent")
_NO_ID = b"\x00no-event-id:"


class DedupMode:
    GROUP = "group"  # bounded input
    STATE = "state"  # streaming without id_label
    ID_LABEL = "id_label"  # Dataflow: Pub/Sub drops redeliveries


class EventBatch(list):
    """Validated events travelling as one element (batch mode; see ``Parsed``)."""


class EventBatchCoder(beam.coders.Coder):
    """Pickles a batch, and estimates its size from its length without encoding it.

    Beam samples element sizes for its metrics by encoding elements (always the first ten
    of each step): for batches of thousands of events that cost more than the job's own
    work. A batch is only encoded if a runner materialises it; the local runner fuses the
    steps that read it."""

    def encode(self, batch: EventBatch) -> bytes:
        return pickle.dumps(list(batch), pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> EventBatch:
        return EventBatch(pickle.loads(encoded))

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> type:
        return EventBatch

    def _create_impl(self) -> CallbackCoderImpl:
        return CallbackCoderImpl(self.encode, self.decode, lambda batch: _EVENT_BYTES * len(batch))


_EVENT_BYTES = 600  # about what an event takes pickled
beam.coders.registry.register_coder(EventBatch, EventBatchCoder)


class Parsed(NamedTuple):
    """``events``: validated events (the schema's Python form).

    - Streaming: one event per element, timestamped with its event_time.
    - Batch: lists of events (one per dedup shard), without timestamps. The batch forms of
      the jobs combine a whole list at a time (common/combine.py) and read event_time from
      the events: on the local runner each element costs a few microseconds per step, and
      stamping one about 8 (docs/pipelines.md, "Performance").

    ``dead_letters``: dead_letter records, one per element."""

    events: beam.PCollection
    dead_letters: beam.PCollection


class EventParser:
    """Plain Python: one payload -> (event, None) or (None, dead letter)."""

    def __init__(
        self,
        stream: str,
        pipeline: str,
        step: str,
        max_clock_skew: timedelta,
        schema_registry: str | None = None,
        *,
        min_event_time: datetime | None = None,
        max_event_age: timedelta | None = None,
    ):
        self.schema = get_schema(STREAM_SUBJECTS[stream])
        self.pipeline, self.step = pipeline, step
        self.max_skew_ms = int(max_clock_skew.total_seconds() * 1000)
        self.min_event_ms = None if min_event_time is None else to_millis(min_event_time)
        self.max_age_ms = None if max_event_age is None else int(max_event_age.total_seconds() * 1000)
        self.schema_registry = schema_registry  # a URL: writer schemas for ids we do not have
        self._remote: RemoteSchemas | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_remote": None}  # the cache (and its lock) stays in its process

    def _from_confluent(self, payload: bytes) -> dict[str, Any]:
        """Our own schema ids from the project's schemas; another id from the registry, if one is set."""
        schema_id = header_schema_id(payload)
        if self.schema_registry is None or schema_id is None or registry().has_id(schema_id):
            return registry().from_confluent(payload, self.schema.subject)
        if self._remote is None:
            self._remote = RemoteSchemas(self.schema_registry)
        try:
            writer = self._remote.writer(schema_id)
        except RemoteSchemaError as exc:
            reason = f"no schema of the project has id {schema_id}, and {exc}"
            raise InvalidEvent(
                self.schema.subject, [FieldError("schema_id", schema_id, reason)], "invalid_avro"
            ) from None
        return self.schema.from_confluent_written_with(payload, writer)

    def parse(
        self, payload: bytes, clock_ms: int, encoding: str = "json", received_ms: int | None = None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``clock_ms`` is the pipeline's clock (the dead letter's received_at); ``encoding`` one
        of ENCODINGS (JSON, plain Avro binary of this schema, or the Confluent wire format);
        ``received_ms`` when the message was received, if it says (module docstring)."""
        try:
            if encoding == "json":
                event = self.schema.from_json(payload)
            elif encoding == "avro":
                event = self.schema.from_avro(payload)
            elif encoding == "confluent":
                event = self._from_confluent(payload)
            else:
                error = f"encoding attribute {encoding!r} is not one of {', '.join(ENCODINGS)}"
                return None, dead_letter(
                    self.pipeline,
                    self.step,
                    "invalid_encoding",
                    error,
                    payload,
                    received_at=millis_to_datetime(clock_ms),
                )
        except InvalidEvent as exc:
            return None, from_invalid_event(
                self.pipeline, self.step, exc, payload, received_at=millis_to_datetime(clock_ms)
            )
        event_ms = to_millis(event["event_time"])
        ahead_ms = event_ms - clock_ms
        reason = error = None
        if ahead_ms > self.max_skew_ms:
            reason, error = (
                "future",
                (
                    f"event_time {format_millis(event_ms)} is {format_duration(timedelta(milliseconds=ahead_ms))} ahead "
                    f"of the pipeline clock (pipelines.max_clock_skew is "
                    f"{format_duration(timedelta(milliseconds=self.max_skew_ms))})"
                ),
            )
        elif self.min_event_ms is not None and event_ms < self.min_event_ms:
            reason, error = (
                "too_old",
                (
                    f"event_time {format_millis(event_ms)} is before pipelines.min_event_time "
                    f"{format_millis(self.min_event_ms)}: not a real time (epoch zero is a missing clock)"
                ),
            )
        elif self.max_age_ms is not None and received_ms is not None and received_ms - event_ms > self.max_age_ms:
            reason, error = (
                "too_old",
                (
                    f"event_time {format_millis(event_ms)} is {format_duration(timedelta(milliseconds=received_ms - event_ms))}"
                    f" before the message was received ({format_millis(received_ms)}; pipelines.max_event_age is "
                    f"{format_duration(timedelta(milliseconds=self.max_age_ms))})"
                ),
            )
        if reason is not None:
            return None, dead_letter(
                self.pipeline,
                self.step,
                reason,
                error,
                payload,
                received_at=millis_to_datetime(clock_ms),
                event_id=event["event_id"],
                event_time=event["event_time"],
            )
        return event, None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stamped(event: dict[str, Any]) -> TimestampedValue:
    return TimestampedValue(event, to_millis(event["event_time"]) / 1000)


class _Counters:
    def __init__(self, stream: str):
        self.read = Metrics.counter(stream, "read")
        self.parsed = Metrics.counter(stream, "parsed")
        self.dead_lettered = Metrics.counter(stream, "dead_lettered")
        self.duplicates = Metrics.counter(stream, "duplicates")


def payload_and_encoding(message: bytes | tuple | PubsubMessage) -> tuple[bytes, str, int | None]:
    """``(payload, encoding, received_ms)``. A raw payload is JSON, received at an unknown
    time; a Pub/Sub message says its encoding in the ``encoding`` attribute, as StreamForge's
    producers set it (JSON when absent), and its receipt in ``received_at`` (the ingest
    function sets it); the local feed (beam_pipelines/local/feed.py) hands over
    ``(data, encoding, received_ms)`` with -1 for unknown, a Kafka read ``(data, encoding)``."""
    if isinstance(message, tuple):
        if len(message) == 3:
            data, encoding, received = message
            return data, encoding, None if received < 0 else received
        return message[0], message[1], None
    if isinstance(message, PubsubMessage):
        attributes = message.attributes or {}
        return message.data, attributes.get("encoding", "json"), receipt_ms(attributes.get("received_at"))
    return message, "json", None


def receipt_ms(received_at: str | None) -> int | None:
    """When StreamForge received a message from its producer: the ``received_at`` attribute
    the ingest function sets; None when absent or unreadable (then only the floor applies)."""
    if not received_at:
        return None
    try:
        return to_millis(parse_timestamp(received_at))
    except ValueError:
        return None


class _Validate(beam.DoFn):
    """Payload or Pub/Sub message -> timestamped event, or a dead letter on the DEAD_LETTER output."""

    def __init__(self, stream: str, parser: EventParser):
        self.stream, self.parser = stream, parser

    def setup(self) -> None:
        self.counters = _Counters(self.stream)

    def process(self, message: bytes | tuple[bytes, str] | PubsubMessage) -> Iterable[Any]:
        self.counters.read.inc()
        payload, encoding, received_ms = payload_and_encoding(message)
        event, rejected = self.parser.parse(payload, now_ms(), encoding, received_ms)
        if rejected is not None:
            self.counters.dead_lettered.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, rejected)
        else:
            self.counters.parsed.inc()
            yield _stamped(event)


_FIRST_KEY = b'{"event_id":"'


def event_id_key(payload: bytes) -> bytes:
    """The event_id of a JSON payload as UTF-8 bytes: where its copies meet.

    Only a valid payload's id matters (an invalid one is dead-lettered wherever it lands).
    Producers write event_id first, so when the payload starts with it, holds no other
    "event_id" and no backslash (no escaped key or value), the bytes up to the next quote
    are the id the validator will read; otherwise the payload is decoded. A payload without
    a readable id is keyed by its hash."""
    if payload.startswith(_FIRST_KEY) and b"\\" not in payload and payload.count(b'"event_id"') == 1:
        end = payload.find(b'"', len(_FIRST_KEY))
        if end > 0:
            return payload[len(_FIRST_KEY) : end]
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        document = None
    event_id = document.get("event_id") if type(document) is dict else None
    if type(event_id) is str:
        return event_id.encode("utf-8", "surrogatepass")  # JSON may carry a lone surrogate
    return _NO_ID + hashlib.sha1(payload).digest()


class _ShardByEventId(beam.DoFn):
    """A batch of payloads -> ``(shard, (encoding, packed payloads))`` for each shard and
    encoding it touches.

    A batch holds JSON lines (bytes, from files) or ``(payload, encoding, event_id)`` items
    (a bounded Kafka read; common/kafka.py). The shard is a hash of the event_id, so the copies
    of an event meet in one shard whichever batches they came in (packing.py says why the
    payloads travel packed). A JSON payload's id is read from it; another encoding's from the
    message's event_id header, else from the decoded payload."""

    def __init__(self, stream: str, shards: int, parser: EventParser):
        self.stream, self.shards, self.parser = stream, shards, parser

    def setup(self) -> None:
        self.read = Metrics.counter(self.stream, "read")

    def process(
        self, batch: list[bytes] | list[tuple[bytes, str, str | None]]
    ) -> Iterable[tuple[int, tuple[str, Packed]]]:
        self.read.inc(len(batch))
        shards = self.shards
        by_shard: dict[tuple[int, str], list[bytes]] = {}
        for item in batch:
            if type(item) is bytes:
                payload, encoding, key = item, "json", event_id_key(item)
            else:
                payload, encoding, event_id = item
                key = event_id.encode("utf-8", "surrogatepass") if event_id else self._key(payload, encoding)
            shard = (zlib.crc32(key) % shards, encoding)
            part = by_shard.get(shard)
            if part is None:
                by_shard[shard] = [payload]
            else:
                part.append(payload)
        for (shard, encoding), payloads in by_shard.items():
            yield shard, (encoding, pack(payloads))

    def _key(self, payload: bytes, encoding: str) -> bytes:
        if encoding == "json":
            return event_id_key(payload)
        event, _ = self.parser.parse(payload, now_ms(), encoding)
        if event is None:
            return _NO_ID + hashlib.sha1(payload).digest()
        return event["event_id"].encode("utf-8", "surrogatepass")


class _FirstValidOfEachId(beam.DoFn):
    """One shard's payloads -> the shard's events, as one list.

    Every payload is validated; invalid ones become dead letters, valid ones are grouped by
    event_id and the first of each id in byte order (so the choice is deterministic) is the
    event, the others are duplicates."""

    def __init__(self, stream: str, parser: EventParser):
        self.stream, self.parser = stream, parser

    def setup(self) -> None:
        self.counters = _Counters(self.stream)

    def process(self, element: tuple[int, Iterable[tuple[str, Packed]]]) -> Iterable[Any]:
        clock_ms = now_ms()
        parse = self.parser.parse
        chosen: dict[str, tuple[bytes, dict[str, Any]]] = {}
        parsed = dead = duplicates = 0
        for encoding, packed in element[1]:
            for payload in unpack(packed):
                event, rejected = parse(payload, clock_ms, encoding)
                if rejected is not None:
                    dead += 1
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, rejected)
                    continue
                parsed += 1
                event_id = event["event_id"]
                earlier = chosen.get(event_id)
                if earlier is None:
                    chosen[event_id] = (payload, event)
                    continue
                duplicates += 1
                if payload < earlier[0]:
                    chosen[event_id] = (payload, event)
        if chosen:
            yield EventBatch(event for _, event in chosen.values())
        self.counters.parsed.inc(parsed)
        self.counters.dead_lettered.inc(dead)
        self.counters.duplicates.inc(duplicates)


class ParseEvents(beam.PTransform):
    """Payloads of one stream -> ``Parsed(events, dead_letters)``.

    With ``DedupMode.GROUP`` (bounded input) the elements are batches (lists) of payloads, as
    io.ReadLineBatches reads them; otherwise one payload each."""

    def __init__(
        self,
        stream: str,
        pipeline: str,
        dedup: str,
        *,
        dedup_ttl: timedelta,
        max_clock_skew: timedelta,
        shards: int = 64,
        schema_registry: str | None = None,
        min_event_time: datetime | None = None,
        max_event_age: timedelta | None = None,
    ):
        super().__init__()
        if stream not in STREAM_SUBJECTS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {', '.join(STREAM_SUBJECTS)}")
        self.stream, self.dedup, self.dedup_ttl, self.shards = stream, dedup, dedup_ttl, shards
        self.parser = EventParser(
            stream,
            pipeline,
            f"Parse {stream}",
            max_clock_skew,
            schema_registry,
            min_event_time=min_event_time,
            max_event_age=max_event_age,
        )

    def expand(self, payloads: beam.PCollection) -> Parsed:
        if self.dedup == DedupMode.GROUP:
            grouped = (
                payloads
                | "Shard by event_id"
                >> beam.ParDo(_ShardByEventId(self.stream, self.shards, self.parser)).with_output_types(
                    beam.typehints.Tuple[int, beam.typehints.Tuple[str, beam.typehints.Tuple[bytes, bytes]]]
                )
                | "Group shards" >> beam.GroupByKey()
                | "Validate, drop duplicates"
                >> beam.ParDo(_FirstValidOfEachId(self.stream, self.parser))
                .with_output_types(EventBatch)
                .with_outputs(DEAD_LETTER, main="events")
            )
            return Parsed(grouped.events, grouped[DEAD_LETTER])
        validated = payloads | "Validate" >> beam.ParDo(_Validate(self.stream, self.parser)).with_outputs(
            DEAD_LETTER, main="events"
        )
        events = validated.events
        if self.dedup == DedupMode.STATE:
            events = events | "Drop duplicates" >> DropRepeats(
                _event_id,
                streaming=True,
                ttl=self.dedup_ttl,
                counter=(self.stream, "duplicates"),
                key_label="Key by event_id",
            )
        return Parsed(events, validated[DEAD_LETTER])


def _event_id(event: dict[str, Any]) -> str:
    return event["event_id"]
