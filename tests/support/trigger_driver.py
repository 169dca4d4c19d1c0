"""Drive one key's windows through Beam's trigger driver as the streaming runner does: elements
in bundles, then the timers due at each new watermark in timestamp order (timers set while
firing are fired too once due), with the state kept in memory as the DirectRunner keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apache_beam.transforms import trigger
from apache_beam.transforms.window import WindowFn
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming, WindowedValue


@dataclass(frozen=True)
class Pane:
    """What a pane says: its window, values, and pane info."""

    start: float
    end: float
    values: tuple
    timing: str
    is_first: bool
    is_last: bool
    index: int


def _pane(windowed: WindowedValue) -> Pane:
    (window,) = windowed.windows
    info = windowed.pane_info
    return Pane(
        float(window.start),
        float(window.end),
        tuple(sorted(windowed.value, key=repr)),
        PaneInfoTiming.to_string(info.timing),
        info.is_first,
        info.is_last,
        info.index,
    )


def drive(
    windowing: Any, steps: list[tuple[str, Any]], combine_fn: Any = None
) -> tuple[list[Pane], trigger.InMemoryUnmergedState]:
    """``steps``: ("elements", [(value, event time s), ...]) or ("watermark", s). Returns the panes
    in order and the key's state at the end. ``combine_fn``: the CombineFn of the step the
    grouping feeds, as the patched runner tells its driver (a pane's values may then hold
    accumulators)."""
    window_fn: WindowFn = windowing.windowfn
    driver = trigger.create_trigger_driver(windowing)
    driver.combine_fn = combine_fn
    state = trigger.InMemoryUnmergedState()
    panes: list[Pane] = []
    watermark = MIN_TIMESTAMP
    for kind, arg in steps:
        if kind == "elements":
            values = []
            for value, at in arg:
                timestamp = Timestamp.of(at)
                windows = window_fn.assign(WindowFn.AssignContext(timestamp, element=value))
                values.append(WindowedValue(value, timestamp, windows))
            panes += [_pane(p) for p in driver.process_elements(state, values, watermark, watermark)]
        else:
            watermark = Timestamp.of(arg)
            while due := sorted(state.get_and_clear_timers(watermark), key=lambda t: t[1][2]):
                for window_id, (name, domain, timestamp, _tag) in due:
                    panes += [
                        _pane(p) for p in driver.process_timer(window_id, name, domain, timestamp, state, watermark)
                    ]
    return panes, state


def held_elements(state: trigger.InMemoryUnmergedState) -> int:
    """How many raw elements the key's state still holds, over all its windows."""
    return sum(len(tags.get("elements", ())) for tags in state.state.values())


def is_empty(state: trigger.InMemoryUnmergedState) -> bool:
    """No timer, no global state, no value left in any window (what the runner drops)."""
    return (
        not any(state.timers.values())
        and not state.global_state
        and not any(value for tags in state.state.values() for value in tags.values())
    )
