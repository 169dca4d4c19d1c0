"""Dropping repeats of one identity: Pub/Sub and Debezium deliver at least once.

``DropRepeats`` keeps the first element of each identity and counts the others:

- streaming: keyed state remembers each identity for ``ttl`` of event time; an event-time
  timer then clears it, so state stays bounded (runners where Pub/Sub's ``id_label`` does
  not apply, and identities no attribute carries, such as a Debezium change's);
- batch: a grouping by identity (on a bounded input the watermark stays at the start until
  everything is read, so a TTL could not expire anything and grouping is the same answer).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer

__all__ = ["DropRepeats"]


class _RememberFor(beam.DoFn):
    """Streaming: the first element of each key within ``ttl`` of event time; the rest counted."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, ttl: timedelta, counter: tuple[str, str]):
        self.ttl_s, self.counter = ttl.total_seconds(), counter

    def setup(self) -> None:
        self.repeats = Metrics.counter(*self.counter)

    def process(
        self,
        element: tuple[str, Any],
        timestamp=beam.DoFn.TimestampParam,
        seen=beam.DoFn.StateParam(SEEN),
        forget=beam.DoFn.TimerParam(FORGET),
    ) -> Iterable[Any]:
        if seen.read():
            self.repeats.inc()
            return ()
        seen.write(True)
        forget.set(timestamp + self.ttl_s)
        return (element[1],)

    @on_timer(FORGET)
    def _forget(self, seen=beam.DoFn.StateParam(SEEN)) -> None:
        seen.clear()


class _FirstOfEach(beam.DoFn):
    """Batch: one element of each group; the rest counted."""

    def __init__(self, counter: tuple[str, str]):
        self.counter = counter

    def setup(self) -> None:
        self.repeats = Metrics.counter(*self.counter)

    def process(self, element: tuple[str, Iterable[Any]]) -> Iterable[Any]:
        first, repeats = None, -1
        for value in element[1]:
            first = value if repeats < 0 else first
            repeats += 1
        if repeats:
            self.repeats.inc(repeats)
        yield first


class DropRepeats(beam.PTransform):
    """Elements -> the first of each ``identity(element)`` (a string); ``counter`` (namespace,
    name) counts the repeats dropped. ``ttl``: how long a streaming identity is remembered."""

    def __init__(
        self,
        identity: Callable[[Any], str],
        *,
        streaming: bool,
        ttl: timedelta,
        counter: tuple[str, str],
        key_label: str = "Key by identity",
    ):
        super().__init__()
        self.identity, self.streaming, self.ttl, self.counter = identity, streaming, ttl, counter
        self.key_label = key_label

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        identity = self.identity
        keyed = elements | self.key_label >> beam.Map(lambda e: (identity(e), e)).with_output_types(
            beam.typehints.Tuple[str, Any]
        )
        if self.streaming:
            return keyed | "Remember for the TTL" >> beam.ParDo(_RememberFor(self.ttl, self.counter))
        return (
            keyed | "Group by identity" >> beam.GroupByKey() | "First of each" >> beam.ParDo(_FirstOfEach(self.counter))
        )
