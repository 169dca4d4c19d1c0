"""Decode, validate and deduplicate: the first step of every job.

Every message is decoded and validated with the foundation's schema. A message that fails
(bad JSON, missing or invalid fields, unknown enum values, an event time too far ahead of
the clock) becomes a dead letter with the reason; a valid event is stamped with its
event time and, if its event_id was seen before, counted as a duplicate and dropped. So
for every input: ``read = parsed + dead_lettered`` and ``parsed = unique + duplicates``,
and the Beam counters of namespace ``<stream>`` say so.

Deduplication has three expansions with the same result:

- Dataflow streaming: Pub/Sub's ``id_label`` (``event_id`` attribute) drops redeliveries
  before the pipeline sees them (io.ReadMessages).
- Other streaming runners: a stateful DoFn keyed by event_id remembers each id for
  ``pipelines.dedup_ttl`` of event time, then an event-time timer clears it.
- Bounded input (batch): a GroupByKey on event_id. On a bounded input the watermark stays
  at the start until all of it is read, so a TTL cannot expire anything and grouping is the
  same computation; on the local runner it costs about 10 us per event where per-key user
  state costs about 100 us (docs/pipelines.md, "Performance").
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any, Iterable, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.common.dead_letters import dead_letter, from_invalid_event
from streamforge.schemas import InvalidEvent, get_schema
from streamforge.timeutil import format_duration, format_millis, millis_to_datetime, to_millis

__all__ = ["DEAD_LETTER", "DedupMode", "EventParser", "ParseEvents", "Parsed", "now_ms"]

DEAD_LETTER = "dead_letter"
_NO_ID = "\x00no-event-id:"
STREAM_SUBJECTS = {"clickstream": "clickstream_event", "orders": "order_event"}


class DedupMode:
    GROUP = "group"  # bounded input
    STATE = "state"  # streaming without id_label
    ID_LABEL = "id_label"  # Dataflow: Pub/Sub drops redeliveries


class Parsed(NamedTuple):
    events: beam.PCollection  # validated events (schema's Python form), timestamped by event_time
    dead_letters: beam.PCollection  # dead_letter records


class EventParser:
    """Plain Python: one payload -> (event, None) or (None, dead letter)."""

    def __init__(self, stream: str, pipeline: str, step: str, max_clock_skew: timedelta):
        self.schema = get_schema(STREAM_SUBJECTS[stream])
        self.pipeline, self.step = pipeline, step
        self.max_skew_ms = int(max_clock_skew.total_seconds() * 1000)

    def parse(self, payload: bytes, clock_ms: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``clock_ms`` is the pipeline's clock (the dead letter's received_at)."""
        received_at = millis_to_datetime(clock_ms)
        try:
            event = self.schema.from_json(payload)
        except InvalidEvent as exc:
            return None, from_invalid_event(self.pipeline, self.step, exc, payload, received_at=received_at)
        ahead_ms = to_millis(event["event_time"]) - clock_ms
        if ahead_ms > self.max_skew_ms:
            error = (f"event_time {format_millis(to_millis(event['event_time']))} is "
                     f"{format_duration(timedelta(milliseconds=ahead_ms))} ahead of the pipeline clock "
                     f"(pipelines.max_clock_skew is {format_duration(timedelta(milliseconds=self.max_skew_ms))})")
            return None, dead_letter(self.pipeline, self.step, "future", error, payload, received_at=received_at,
                                     event_id=event["event_id"], event_time=event["event_time"])
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


class _Validate(beam.DoFn):
    """Payload -> timestamped event, or a dead letter on the DEAD_LETTER output."""

    def __init__(self, stream: str, parser: EventParser):
        self.stream, self.parser = stream, parser

    def setup(self) -> None:
        self.counters = _Counters(self.stream)

    def process(self, payload: bytes) -> Iterable[Any]:
        self.counters.read.inc()
        event, rejected = self.parser.parse(payload, now_ms())
        if rejected is not None:
            self.counters.dead_lettered.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, rejected)
        else:
            self.counters.parsed.inc()
            yield _stamped(event)


class _KeyByEventId(beam.DoFn):
    """(event_id, payload). A payload without a readable event_id cannot be valid; it is keyed
    by its own hash so that it still takes the one path (and becomes a precise dead letter)."""

    def process(self, payload: bytes) -> Iterable[tuple[str, bytes]]:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        event_id = document.get("event_id") if isinstance(document, dict) else None
        yield (event_id if isinstance(event_id, str) else _NO_ID + hashlib.sha1(payload).hexdigest()), payload


class _FirstValidOfEachId(beam.DoFn):
    """Validates the payloads sharing an event_id: the first valid one (in byte order, so the
    choice is deterministic) is the event, other valid ones are duplicates, invalid ones dead letters."""

    def __init__(self, stream: str, parser: EventParser):
        self.stream, self.parser = stream, parser

    def setup(self) -> None:
        self.counters = _Counters(self.stream)

    def process(self, element: tuple[str, Iterable[bytes]]) -> Iterable[Any]:
        payloads = list(element[1])
        if len(payloads) > 1:
            payloads.sort()
        clock_ms = now_ms()
        accepted: bytes | None = None
        for payload in payloads:
            self.counters.read.inc()
            if payload == accepted:  # an exact redelivery: no need to validate it again
                self.counters.parsed.inc()
                self.counters.duplicates.inc()
                continue
            event, rejected = self.parser.parse(payload, clock_ms)
            if rejected is not None:
                self.counters.dead_lettered.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, rejected)
                continue
            self.counters.parsed.inc()
            if accepted is None:
                accepted = payload
                yield _stamped(event)
            else:
                self.counters.duplicates.inc()


class _DedupWithState(beam.DoFn):
    """Streaming dedup: remembers each event_id for ``ttl`` of event time."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, stream: str, ttl: timedelta):
        self.stream = stream
        self.ttl_s = ttl.total_seconds()

    def setup(self) -> None:
        self.duplicates = Metrics.counter(self.stream, "duplicates")

    def process(self, element: tuple[str, dict[str, Any]], timestamp=beam.DoFn.TimestampParam,
                seen=beam.DoFn.StateParam(SEEN), forget=beam.DoFn.TimerParam(FORGET)) -> Iterable[Any]:
        if seen.read():
            self.duplicates.inc()
            return
        seen.write(True)
        forget.set(timestamp + self.ttl_s)
        yield element[1]

    @on_timer(FORGET)
    def _forget(self, seen=beam.DoFn.StateParam(SEEN)) -> None:
        seen.clear()


class ParseEvents(beam.PTransform):
    """Payloads of one stream -> ``Parsed(events, dead_letters)``."""

    def __init__(self, stream: str, pipeline: str, dedup: str, *, dedup_ttl: timedelta, max_clock_skew: timedelta):
        super().__init__()
        if stream not in STREAM_SUBJECTS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {', '.join(STREAM_SUBJECTS)}")
        self.stream, self.dedup, self.dedup_ttl = stream, dedup, dedup_ttl
        self.parser = EventParser(stream, pipeline, f"Parse {stream}", max_clock_skew)

    def expand(self, payloads: beam.PCollection) -> Parsed:
        if self.dedup == DedupMode.GROUP:
            grouped = (
                payloads
                | "Key by event_id" >> beam.ParDo(_KeyByEventId()).with_output_types(beam.typehints.Tuple[str, bytes])
                | "Group by event_id" >> beam.GroupByKey()
                | "Validate, drop duplicates" >> beam.ParDo(_FirstValidOfEachId(self.stream, self.parser))
                .with_outputs(DEAD_LETTER, main="events")
            )
            return Parsed(grouped.events, grouped[DEAD_LETTER])
        validated = payloads | "Validate" >> beam.ParDo(_Validate(self.stream, self.parser)).with_outputs(
            DEAD_LETTER, main="events")
        events = validated.events
        if self.dedup == DedupMode.STATE:
            events = (
                events
                | "Key by event_id" >> beam.Map(lambda event: (event["event_id"], event)).with_output_types(
                    beam.typehints.Tuple[str, beam.typehints.Dict[str, Any]])
                | "Drop duplicates" >> beam.ParDo(_DedupWithState(self.stream, self.dedup_ttl))
            )
        return Parsed(events, validated[DEAD_LETTER])
