"""Event-time windowing shared by the windowed jobs (sessions, revenue)."""

from __future__ import annotations

import math
from datetime import timedelta

import apache_beam as beam
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterProcessingTime, AfterWatermark
from apache_beam.utils.windowed_value import PaneInfoTiming

__all__ = ["accumulating", "pane_timing"]


def accumulating(
    window_fn: beam.transforms.window.WindowFn, allowed_lateness: timedelta, early: timedelta = timedelta(0)
) -> beam.WindowInto:
    """One pane when the watermark passes the window's end, then one per late element within
    ``allowed_lateness``; each pane holds everything so far (a later pane replaces the earlier row).
    With ``early``, also an EARLY pane at most every ``early`` of processing time while the
    window gets elements before its end (Beam's speculative panes)."""
    early_s = math.ceil(early.total_seconds())  # Beam's AfterProcessingTime takes whole seconds
    late = AfterCount(1) if allowed_lateness.total_seconds() > 0 else None
    trigger = None
    if early_s > 0 or late is not None:
        trigger = AfterWatermark(early=AfterProcessingTime(early_s) if early_s > 0 else None, late=late)
    return beam.WindowInto(
        window_fn,
        trigger=trigger,
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=allowed_lateness.total_seconds(),
    )


def pane_timing(pane: object) -> str:
    """EARLY, ON_TIME, LATE or UNKNOWN (the session_aggregate enum) for a ``beam.DoFn.PaneInfoParam``."""
    return PaneInfoTiming.to_string(pane.timing)
