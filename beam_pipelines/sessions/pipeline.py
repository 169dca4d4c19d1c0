"""The sessions job: clickstream -> per-user sessions -> ``user_sessions`` rows.

Streaming (Pub/Sub):

    events -> Dead-letter late events -> Session windows (gap) -> Combine session metrics -> Session rows

Beam's event-time ``Sessions`` windows with the configured gap and allowed lateness,
accumulating panes (a late event within the lateness re-fires the session with everything so
far; the row records ON_TIME or LATE) and the mergeable ``SessionAggregate`` as CombineFn.
While a session is open, an EARLY pane every ``sessions.early_panes`` of processing time in
which it got clicks: its row so far, replaced by the later panes (a session merged into an
earlier start is superseded: streamforge/warehouse_tables.py, ``TableKey.within``).

Batch (files):

    event batches -> Sessions per user (combine each batch, merge per user) -> Session rows

On a bounded input every session is final when the input ends, so the job folds each user's
events into ``UserSessions`` (sessions/metrics.py): a mergeable value that splits and
merges sessions by exactly the rule of session windows. The events of a bundle's batches are
combined per user in plain Python and Beam merges the partial session lists per user
(common/combine.py), so the shuffle carries a few partial lists per user instead of every event, and the rows equal the
streaming job's (tests/pipelines compare both with SQL). It exists because the local
runner's merging-window machinery costs about 0.4 ms per user key (docs/pipelines.md,
"Performance").
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from beam_pipelines.common.coders import LayoutCoder
from beam_pipelines.common.combine import AggregateFn, CombineBatchesPerKey
from beam_pipelines.common.lateness import LateGate
from beam_pipelines.common.windows import accumulating, pane_timing
from beam_pipelines.sessions.metrics import SessionAggregate, UserSessions
from streamforge.timeutil import format_duration

__all__ = ["SessionWindows"]


def _by_user(event: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]]]:
    return ((event["user_id"], event),)


class _Count(beam.DoFn):
    def setup(self) -> None:
        self.events = Metrics.counter("sessions", "events")

    def process(self, event: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        self.events.inc()
        yield event["user_id"], event


class _WindowedRow(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("sessions", "emitted")

    def process(self, element: tuple[str, SessionAggregate], pane=beam.DoFn.PaneInfoParam) -> Iterable[dict[str, Any]]:
        self.rows.inc()
        yield element[1].record(pane_timing(pane), pane.index)


class _FinalRows(beam.DoFn):
    def setup(self) -> None:
        self.rows = Metrics.counter("sessions", "emitted")

    def process(self, element: tuple[str, UserSessions]) -> Iterable[dict[str, Any]]:
        for session in element[1].sessions:
            self.rows.inc()
            yield session.record("ON_TIME")  # the one pane a session window fires in batch


class SessionAggregateCoder(LayoutCoder):
    """sessions: the accumulator of a session window."""

    def fields(self, a: SessionAggregate) -> list[Any]:
        return [
            a.user_id,
            a.event_count,
            a.start_ms,
            a.end_ms,
            list(a.first_key),
            a.device_type,
            a.geo_region,
            a.counts,
            a.revenue_cents,
            a.category_views,
        ]

    def build(self, version: int, f: list[Any]) -> SessionAggregate:
        return SessionAggregate(f[0], f[1], f[2], f[3], tuple(f[4]), f[5], f[6], f[7], f[8], f[9])


class SessionWindows(beam.PTransform):
    """Validated clickstream events -> ``(user_sessions rows, [late dead letters])``.

    Streaming: timestamped events; batch: lists of events (see common/parse.py)."""

    def __init__(
        self,
        gap: timedelta,
        allowed_lateness: timedelta,
        *,
        streaming: bool,
        lateness_margin: timedelta = timedelta(0),
        early_panes: timedelta = timedelta(0),
    ):
        super().__init__()
        self.gap, self.allowed_lateness = gap, allowed_lateness
        self.streaming, self.margin, self.early_panes = streaming, lateness_margin, early_panes

    def display_data(self) -> dict[str, Any]:
        # Settings are shown here, never in step labels: a label is part of a running job's
        # identity for --update (dataflow/renames.py).
        return {
            "gap": format_duration(self.gap),
            "allowed_lateness": format_duration(self.allowed_lateness),
            "lateness_margin": format_duration(self.margin),
            "early_panes": format_duration(self.early_panes),
        }

    def window_lateness(self) -> timedelta:
        """How long a session window is kept after its end: the gate admits a click while its own
        window [t, t + gap) is within the allowed lateness (plus the margin), and such a click can
        join a session that ended up to a gap before that window; a runner collects a window at
        its end plus this (Dataflow, and the local runner's fix 8), so the session must still be
        there, or the click would start a session of its own where SQL sees one."""
        return self.allowed_lateness + self.margin + self.gap

    def expand(self, events: beam.PCollection):
        if not self.streaming:
            rows = (
                events
                | "Sessions per user"
                >> CombineBatchesPerKey(
                    _by_user,
                    AggregateFn(partial(UserSessions, int(self.gap.total_seconds() * 1000))),
                    counter=("sessions", "events"),
                )
                | "Session rows" >> beam.ParDo(_FinalRows())
            )
            return rows, []
        gap_ms = int(self.gap.total_seconds() * 1000)
        gated = events | LateGate(
            "sessions", "clickstream_event", lambda at_ms: at_ms + gap_ms, self.allowed_lateness, self.margin
        )
        rows = (
            gated.events
            | "Key by user" >> beam.ParDo(_Count())
            | "Session windows"
            >> accumulating(window.Sessions(self.gap.total_seconds()), self.window_lateness(), self.early_panes)
            | "Combine session metrics" >> beam.CombinePerKey(AggregateFn(SessionAggregate, SessionAggregateCoder()))
            | "Session rows" >> beam.ParDo(_WindowedRow())
        )
        return rows, [gated.dead_letter]
