"""Event-time windowing shared by the windowed jobs (sessions, revenue)."""

from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterWatermark
from apache_beam.utils.windowed_value import PaneInfoTiming

__all__ = ["accumulating", "pane_timing"]


def accumulating(window_fn: beam.transforms.window.WindowFn, allowed_lateness: timedelta) -> beam.WindowInto:
    """One pane when the watermark passes the window's end, then one per late element within
    ``allowed_lateness``; each pane holds everything so far (a late pane replaces the earlier row)."""
    return beam.WindowInto(
        window_fn,
        trigger=AfterWatermark(late=AfterCount(1)) if allowed_lateness.total_seconds() > 0 else None,
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=allowed_lateness.total_seconds(),
    )


def pane_timing(pane: object) -> str:
    """EARLY, ON_TIME, LATE or UNKNOWN (the session_aggregate enum) for a ``beam.DoFn.PaneInfoParam``."""
    return PaneInfoTiming.to_string(pane.timing)
