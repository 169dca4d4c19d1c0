"""The late-data gate: too-late events become dead letters instead of vanishing in a window.

A Beam window silently drops an element that arrives after the watermark has passed the
window's end plus its allowed lateness; a DoFn cannot read the watermark to see that
coming. The gate learns it from event-time timers instead: each of a few shards (keyed by
a hash of event_id) arms a timer at its first event and then every ``lateness_margin`` of
event time, for as long as an event it has seen could still be on time; when the timer
fires, the watermark has reached that time. An event whose window would have closed before
that known watermark (``deadline + allowed_lateness < known watermark``) is dead-lettered
with reason ``late``; everything else passes.

What the gate knows lags the real watermark by about one step, so the windows after it keep
their state ``pipelines.lateness_margin`` longer than the allowed lateness: whatever the
gate lets through, the window still accepts. Session windows keep theirs a gap longer still
(sessions/pipeline.py, ``window_lateness``): an admitted click can join a session that ended
up to a gap before its own window, and that session must not have been collected. A shard that has seen no event for longer than
the gap plus the lateness stops looking; the first event after that passes, and only if it
is later than the margin too does the window drop it (Beam counts those as
``droppedDueToLateness``). With steady traffic every shard keeps looking. Only streaming jobs need the gate: on a bounded input the
watermark stays at the start until everything is read, so nothing is late.
"""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer

from beam_pipelines.common.dead_letters import dead_letter
from beam_pipelines.common.parse import DEAD_LETTER, now_ms
from streamforge.schemas import get_schema
from streamforge.timeutil import format_duration, format_millis, millis_to_datetime

__all__ = ["LateGate"]

_MIN_MS = -(2**62)


def _ms(timestamp: Any) -> int:
    return timestamp.micros // 1000


class _Gate(beam.DoFn):
    KNOWN = ReadModifyWriteStateSpec("known_watermark_ms", VarIntCoder())
    ARMED = ReadModifyWriteStateSpec("armed_at_ms", VarIntCoder())
    LATEST = ReadModifyWriteStateSpec("latest_event_ms", VarIntCoder())
    WATCH = TimerSpec("watch", TimeDomain.WATERMARK)

    def __init__(
        self,
        job: str,
        step: str,
        subject: str,
        deadline_ms: Callable[[int], int],
        allowed_lateness: timedelta,
        resolution: timedelta,
    ):
        self.job, self.step, self.subject = job, step, subject
        self.deadline_ms = deadline_ms
        self.lateness_ms = int(allowed_lateness.total_seconds() * 1000)
        self.step_ms = max(1, int(resolution.total_seconds() * 1000))

    def setup(self) -> None:
        self.schema = get_schema(self.subject)
        self.late = Metrics.counter(self.job, "late")

    def process(
        self,
        element: tuple[int, dict[str, Any]],
        timestamp=beam.DoFn.TimestampParam,
        known=beam.DoFn.StateParam(KNOWN),
        armed=beam.DoFn.StateParam(ARMED),
        latest=beam.DoFn.StateParam(LATEST),
        watch=beam.DoFn.TimerParam(WATCH),
    ) -> Iterable[Any]:
        event = element[1]
        at_ms = _ms(timestamp)
        watermark_ms = known.read()
        closed_ms = self.deadline_ms(at_ms) + self.lateness_ms
        if watermark_ms is not None and closed_ms < watermark_ms:
            self.late.inc()
            error = (
                f"event_time {format_millis(at_ms)} arrived after its window closed at {format_millis(closed_ms)} "
                f"(allowed lateness {format_duration(timedelta(milliseconds=self.lateness_ms))}; "
                f"watermark at least {format_millis(watermark_ms)})"
            )
            payload = self.schema.to_json(event, validate=False)
            return [
                beam.pvalue.TaggedOutput(
                    DEAD_LETTER,
                    dead_letter(
                        self.job,
                        self.step,
                        "late",
                        error,
                        payload,
                        received_at=millis_to_datetime(now_ms()),
                        event_id=event["event_id"],
                        event_time=event["event_time"],
                    ),
                )
            ]
        latest.write(max(latest.read() or _MIN_MS, at_ms))
        if armed.read() is None:
            watch.set(timestamp)
            armed.write(at_ms)
        return (event,)

    @on_timer(WATCH)
    def _watermark_passed(
        self,
        fired=beam.DoFn.TimestampParam,
        known=beam.DoFn.StateParam(KNOWN),
        armed=beam.DoFn.StateParam(ARMED),
        latest=beam.DoFn.StateParam(LATEST),
        watch=beam.DoFn.TimerParam(WATCH),
    ) -> None:
        """The watermark has reached ``fired``: remember it and look again one step later, for as
        long as an event this shard has seen could still be on time."""
        fired_ms = _ms(fired)
        known.write(max(known.read() or _MIN_MS, fired_ms))
        newest = latest.read()
        horizon_ms = self.deadline_ms(newest) + self.lateness_ms + self.step_ms if newest is not None else fired_ms
        if fired_ms < horizon_ms:
            watch.set((fired_ms + self.step_ms) / 1000)
            armed.write(fired_ms + self.step_ms)
        else:
            armed.clear()


class LateGate(beam.PTransform):
    """Timestamped events -> on-time events; too-late ones on the DEAD_LETTER output.

    ``deadline_ms(t)`` is the end of the window an event at ``t`` opens (sessions: t + gap;
    revenue: the end of its minute).
    """

    def __init__(
        self,
        job: str,
        subject: str,
        deadline_ms: Callable[[int], int],
        allowed_lateness: timedelta,
        resolution: timedelta,
        shards: int = 16,
    ):
        super().__init__()
        self.job, self.subject, self.shards = job, subject, shards
        self.deadline_ms, self.allowed_lateness, self.resolution = deadline_ms, allowed_lateness, resolution

    def expand(self, events: beam.PCollection):
        shards = self.shards
        return (
            events
            | "Shard by event_id"
            >> beam.Map(lambda e: (zlib.crc32(e["event_id"].encode()) % shards, e)).with_output_types(
                beam.typehints.Tuple[int, beam.typehints.Dict[str, Any]]
            )
            | "Dead-letter late events"
            >> beam.ParDo(
                _Gate(self.job, self.label, self.subject, self.deadline_ms, self.allowed_lateness, self.resolution)
            ).with_outputs(DEAD_LETTER, main="events")
        )
