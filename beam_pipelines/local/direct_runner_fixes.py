"""Twelve fixes to Beam's bundle-based DirectRunner (the local streaming runner), applied together.

1. Counters of every bundle after a step's first on a worker thread were lost. The executor
   gives each bundle a new MetricsContainer, but the thread's StateSampler caches the scoped
   state of each step with the container of its first bundle: later bundles count into that
   stale container and commit their own, empty one (a streaming run reported 1,400 clicks
   read of 5,852). Fixed by a fresh StateSampler per bundle (``_call_with_own_sampler``).

2. Due timers are found by due time. Between bundles the runner asks each stateful or grouping step for its due timers, and the
step walks every key it has ever seen (``watermark_manager._TransformWatermarks.
extract_transform_timers``), and keys are never deleted. A streaming job keeps one key per
user (sessions, fraud) and, with keyed dedup, one per event: the scan grew from 10 ms to
250 ms at 100k keys and took over half of the job's time (docs/live.md, "How the local
streaming path keeps up").

The patch indexes each step's keys by their earliest event-time timer and, in a second heap, by
their earliest processing-time timer (the sessions' EARLY panes set one per open session, so a
set of such keys walked at every scan would have been the same walk); a bundle that commits a key's state marks the key,
and the next scan re-indexes the marked keys, drops those whose state became empty (the
runner recreates an empty state on demand) and visits only due keys. It returns the same
timers as the original, which still decides which of a key's timers are due.

3. A TestStream read from a service buffered its events without bound, so a pipeline slower
   than its input held an ever-growing backlog in memory, already acknowledged upstream. The
   buffer is bounded (``_BoundedQueue``, ``RUNAHEAD_EVENTS``): the service's stream then
   waits, the feed stops pulling, and the backlog stays in Pub/Sub where it can be seen.

4. Every bundle of a ParDo pickled and unpickled its DoFn, then inspected the signatures of its
   methods (``userstate.get_dofn_specs``, several times over): about 40% of the runner's one
   worker thread in a live run at 500 events/s. The unpickled copy is now made once per DoFn
   and reused for its bundles (``setup`` and ``teardown`` still run around every bundle), and
   the state and timer specs are looked up once per DoFn object (``_DoFnOnce``).

5. Each step's output watermark is the minimum of its keys' watermark holds, and the runner
   found it by walking every key holding one (``_TransformWatermarks.refresh``) for every
   bundle of every downstream step, comparing Beam ``Timestamp``s in Python. A session
   window holds its key for the whole gap, so the walk grew with the users active in the last
   30 minutes: in an hour at about 900 events/s it and its comparisons took a third of the
   worker thread and the rate the job took fell from 930 to 460 events/s. The holds are now
   kept with a heap of (microseconds, key), stale entries dropped as they surface
   (``_EarliestHolds``); ``refresh`` is Beam's own with that one lookup changed.

6. Merging windows (sessions) read and write every combining state through
   ``_CombiningValueStateTag.without_extraction``, which defined a new CombineFn class on every
   call: 22% of the worker thread. The result depends only on the tag's name and combine
   function, so it is made once for each (``_without_extraction_once``).

7. A late pane kept its window's watermark hold when the step's output watermark was still
   before the window's end (``GeneralTriggerDriver._output`` keeps the hold then, for the
   on-time pane to come). A late element that extends a session moves the window's end past
   that watermark, and after the on-time pane no timer is set again: the hold stayed for
   good, held the step's output watermark there, and the run ended in the runner's "pipeline
   stall" (catching up on 485,000 Kafka messages left 3,260 such holds). A pane fired after
   the on-time pane (``AfterWatermark``'s late phase) now releases its hold
   (``_output_releasing_late_holds``).

8. The trigger driver never garbage-collected a window. With accumulating panes and a late
   trigger (``AfterWatermark(late=AfterCount(1))``) no pane is ever final, so every window kept
   its raw elements after its allowed lateness had passed: every closed session's clicks and
   every minute's orders, for the life of the job (a run at 1,000 events/s grew 150 MB a
   minute). Java's runners (``ReduceFnRunner``) give each window a garbage-collection timer at
   its end plus the allowed lateness; when it fires they emit a last pane if elements arrived
   since the previous one (``ClosingBehavior.FIRE_IF_NON_EMPTY``) and clear all of the
   window's state; later elements for it are expired. Done the same way here
   (``_process_elements_collecting_garbage``, ``_process_timer_collecting_garbage``): the
   timer is set for the windows a bundle added elements to, once per window and key (the
   windows this bundle touched, after merging), one microsecond after the instant from which
   Beam's Python driver already drops the window's elements as expired; a key whose last
   window is collected is left with no state at all, which fix 2 then drops. When the
   watermark passes a window's end and its collection at once (a drain), the window's own
   event-time timers fire before it is collected, as Java's runners then emit the ON_TIME
   pane: the runner fires a key's timers in the order they were set, and a merge sets the
   end-of-window timer again after the collection timer.

9. A window's state held every raw element until the window was collected, where Dataflow
   holds one accumulator per window and key (combiner lifting): a session kept each of its
   clicks, as a parsed event, for the whole gap and allowed lateness. When a grouping step's
   only consumer is the combine of a ``CombinePerKey`` (``CombineValuesDoFn``, no side
   inputs), the elements a bundle adds to a window are folded into one accumulator with that
   CombineFn (``_Accumulated``), and the combine step merges it with any raw elements. The
   panes and their values are the same; the state is one accumulator per window.

10. The runner copies a key's state for every bundle that touches the key (so that a failed
    bundle leaves no partial writes), and ``InMemoryUnmergedState.copy`` deep-copied its timers
    and global state: 8% of the worker thread in a live run at 1,000 events/s (a sampled
    profile, README "Live latencies"). Timers hold immutable timestamps and the global state
    of a merging window driver is its window-id map, so the copy now copies each dict and list
    level and shares the immutable values (``_copy_state``); any other global state is still
    deep-copied. Beam's adapter also kept, for every window merged into a session, that
    window's id with its own state dict, lists and timers; they are merged under the session's
    first id when it merges (``_merge_state_of_merged_windows``), as Java's runners merge state,
    and a window's watermark holds are kept combined into one instead of one per bundle
    (``_add_state_once_per_hold``).
11. Every key's state lived between its bundles as Python objects: dicts of lists per window,
    a timer dict, a window-id map, Timestamps with three attributes each (about 3.7 KB for a
    session window of one accumulator, tracemalloc). A session is kept for its gap and allowed
    lateness after its last click, so that was most of the job's memory. A committed state now
    rests pickled (``_Resting``, ``_rest``): the classes, functions and tag names it refers to
    are numbered once per process instead of written into every key's bytes, timestamps are
    written as their microseconds, and empty lists are left out (about 550 bytes for the same
    window). A bundle thaws the key's state (``_thaw``) instead of copying it, so it still
    never writes into the committed one; the timer index keeps what it needs beside the bytes.
    A state holding something that cannot be pickled stays an object.
12. Beam's trigger driver defines a merge-context class inside ``process_elements``, so every
    call that merges windows (every click of a session) made a new class: a type with its
    methods, cells and a subclass entry, all reference cycles that only the garbage collector
    frees. The collector then ran often and walked them, and its pauses stopped the one worker
    thread (docs/live.md). ``_process_elements`` is Beam's method with that class defined once
    (``_TriggerMergeContext``); fix 8 wraps it. The timer index (fix 2) also keeps its due times
    as ints, so its heap entries are not objects the collector walks.

Written as the upstream fixes would be, and applied only while a local streaming job runs
(``patched_direct_runner()``), on the one Beam version they were written against: on any
other version the runner is left alone (slower, and its counters undercount) and
tests/pipelines/test_direct_runner_fixes.py fails, so that they are checked again before the
pin moves.
"""

from __future__ import annotations

import collections
import copy
import copyreg
import heapq
import io
import itertools
import logging
import pickle
import queue
import threading
import types
from contextlib import contextmanager
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.runners.direct import (
    evaluation_context,
    executor,
    test_stream_impl,
    transform_evaluator,
    watermark_manager,
)
from apache_beam.runners.direct.util import TimerFiring
from apache_beam.runners.worker import statesampler
from apache_beam.transforms import combiners, core, trigger, userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import IntervalWindow, WindowFn
from apache_beam.utils.counters import CounterFactory
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, TIME_GRANULARITY, Timestamp

__all__ = ["BEAM_VERSION", "GC_TIMER", "patched_direct_runner"]

#: The Beam release whose DirectRunner this patch was written against.
BEAM_VERSION = "2.77.0"
#: How many TestStream events the runner may read ahead of what it has processed.
RUNAHEAD_EVENTS = 4
_LOG = logging.getLogger(__name__)


class _Resting:
    """A key's state between its bundles: pickled, with what the timer index needs to know."""

    __slots__ = ("blob", "earliest", "realtime", "empty")

    def __init__(self, blob: bytes, earliest: int | None, realtime: float | None, empty: bool) -> None:
        self.blob, self.earliest, self.realtime, self.empty = blob, earliest, realtime, empty


def _nanos(timestamp: Any) -> int:
    """A timestamp (a user timer's may be seconds) as an int that orders as it does: the timer
    index compares ints, not Timestamps."""
    if type(timestamp) is not Timestamp:
        timestamp = Timestamp.of(timestamp)
    return timestamp._total(Timestamp.NANOS_PRECISION)


def _timer_index(state: Any) -> tuple[int | None, float | None]:
    """(earliest event-time timer in ns, earliest processing-time timer in seconds), each None if unset."""
    earliest, realtime = None, None
    for timers in state.timers.values():
        for (_name, domain, _tag), timestamp in timers.items():
            if domain == TimeDomain.REAL_TIME:
                if realtime is None or float(timestamp) < realtime:
                    realtime = float(timestamp)
            else:
                at = _nanos(timestamp)
                if earliest is None or at < earliest:
                    earliest = at
    return earliest, realtime


def _timestamp_of(micros: int) -> Timestamp:
    """``Timestamp(micros=micros)`` without its argument checks (a thawed state has many)."""
    timestamp = Timestamp.__new__(Timestamp)
    timestamp._precision = Timestamp.MICROS_PRECISION
    timestamp._seconds, timestamp._subseconds = divmod(micros, 1_000_000)
    return timestamp


def _reduce_timestamp(timestamp: Timestamp) -> Any:
    if timestamp._precision != Timestamp.MICROS_PRECISION:  # finer than the runner's own
        return timestamp.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return _timestamp_of, (timestamp.micros,)


class _StatePickler(pickle.Pickler):
    """Pickles a resting state small: the classes, functions and state names it refers to are
    numbered once per process (``_SHARED``) instead of spelled out in every key's bytes, and
    timestamps and windows are written as their microseconds."""

    dispatch_table = {
        **copyreg.dispatch_table,
        Timestamp: _reduce_timestamp,
        IntervalWindow: lambda window: (IntervalWindow, (window.start, window.end)),
    }

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is str:
            return _SHARED.number.get(obj)  # only the names _rest registered, never data
        if kind is type or kind is types.FunctionType or kind is types.BuiltinFunctionType:
            return _SHARED.register(obj)
        return None


class _StateUnpickler(pickle.Unpickler):
    def persistent_load(self, number: int) -> Any:
        return _SHARED.objects[number]


class _SharedNames:
    """Objects every resting state may refer to, each by its number (the process's lifetime)."""

    def __init__(self) -> None:
        self.objects: list[Any] = []
        self.number: dict[Any, int] = {}
        self.lock = threading.Lock()

    def register(self, obj: Any) -> int:
        number = self.number.get(obj)
        if number is None:
            with self.lock:
                number = self.number.get(obj)
                if number is None:
                    number = self.number[obj] = len(self.objects)
                    self.objects.append(obj)
        return number


_SHARED = _SharedNames()


def _dumps(value: Any) -> bytes:
    out = io.BytesIO()
    _StatePickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


def _rest(state: Any) -> Any:
    """``state`` as a ``_Resting``, or as it is if something in it cannot be pickled. Empty lists
    (what reading an unset tag leaves) and empty dicts are left out: thawing recreates them."""
    earliest, realtime = _timer_index(state)
    timers = {}
    for window, window_timers in state.timers.items():
        if window_timers:
            timers[window] = dict(window_timers)
            for name, domain, dynamic_tag in window_timers:
                _SHARED.register(name), _SHARED.register(domain), _SHARED.register(dynamic_tag)
    tags = {}
    for window, values in state.state.items():
        kept = {tag: value for tag, value in values.items() if not (type(value) is list and not value)}
        if kept:
            tags[window] = kept
            for tag in kept:
                _SHARED.register(tag)
    for tag in state.global_state:
        _SHARED.register(tag)
    try:
        blob = _dumps((timers, tags, state.global_state))
    except Exception:  # noqa: BLE001 - an unpicklable value: the state stays an object
        return state
    return _Resting(blob, earliest, realtime, not timers and not tags and not state.global_state)


def _thaw(resting: Any) -> Any:
    """A new, independent state from a ``_Resting`` (or a copy of a state kept as an object)."""
    if not isinstance(resting, _Resting):
        return resting.copy()
    timers, tags, global_state = _StateUnpickler(io.BytesIO(resting.blob)).load()
    state = trigger.InMemoryUnmergedState()
    state.timers.update(timers)
    state.state = collections.defaultdict(_window_state)
    for window, values in tags.items():
        state.state[window].update(values)
    state.global_state = global_state
    return state


class _IndexedKeyedStates(dict):
    """One step's ``{encoded key: state}``, remembering which keys were written since the last
    scan; each key's state rests pickled between its bundles (fix 11)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: set[Any] = set()
        self.mutex = threading.Lock()
        self.heap: list[tuple[int, int, Any]] = []  # (earliest event-time timer in ns, tie-break, key)
        self.due_at: dict[Any, int] = {}  # key -> its entry's time in the heap
        self.realtime_heap: list[tuple[float, int, Any]] = []  # the same for processing-time timers
        self.realtime_due_at: dict[Any, float] = {}
        self.sequence = itertools.count()
        self.timers_read: dict[Any, Any] = {}  # key -> the state thawed to read its due timers

    def __setitem__(self, key: Any, state: Any) -> None:
        if type(key) is bytes and isinstance(state, trigger.InMemoryUnmergedState):
            state = _rest(state)  # not the evaluators' own bookkeeping (WATERMARK_TAG), kept live
        self.timers_read.pop(key, None)
        super().__setitem__(key, state)
        with self.mutex:
            self.written.add(key)

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        return _thaw(value) if isinstance(value, _Resting) else value

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        return _thaw(value) if isinstance(value, _Resting) else value

    def thawed(self, key: Any) -> Any:
        """A new state of ``key`` for a bundle to change (an empty one for a key never written);
        the one thawed to read its due timers, if nothing was written since, is not thawed twice."""
        state = self.timers_read.pop(key, None)
        if state is not None:
            return state
        value = super().get(key)
        return evaluation_context.DirectUnmergedState() if value is None else _thaw(value)

    def read_timers(self, key: Any) -> Any:
        """``key``'s state to read its timers from (unchanged by the reading), kept for the bundle
        that fires them; None for a key without state."""
        state = self.get(key)
        if state is not None:
            self.timers_read[key] = state
        return state

    def items(self) -> Any:
        return ((key, self[key]) for key in list(self))

    def values(self) -> Any:
        return (self[key] for key in list(self))

    def take_written(self) -> set[Any]:
        with self.mutex:
            written, self.written = self.written, set()
        return written

    def index(self, key: Any) -> None:
        value = super().get(key)
        if isinstance(value, _Resting):
            earliest, realtime, empty = value.earliest, value.realtime, value.empty
        elif value is not None:
            (earliest, realtime), empty = _timer_index(value), _is_empty(value)
        else:
            earliest, realtime, empty = None, None, False
        self._place(self.heap, self.due_at, key, earliest)
        self._place(self.realtime_heap, self.realtime_due_at, key, realtime)
        if value is not None and earliest is None and realtime is None and empty:
            dict.pop(self, key, None)

    def _place(self, heap: list, due_at: dict, key: Any, at: Any) -> None:
        if at is None:
            due_at.pop(key, None)
        elif due_at.get(key) != at:
            due_at[key] = at
            heapq.heappush(heap, (at, next(self.sequence), key))

    def due(self, watermark: Any) -> list[Any]:
        """Keys with an event-time timer at or before ``watermark`` (taken out of the index)."""
        keys, self.heap = self._take(self.heap, self.due_at, _nanos(watermark))
        return keys

    def due_realtime(self, now: float) -> list[Any]:
        """Keys with a processing-time timer at or before ``now`` (taken out of the index)."""
        keys, self.realtime_heap = self._take(self.realtime_heap, self.realtime_due_at, now)
        return keys

    def _take(self, heap: list, due_at: dict, until: Any) -> tuple[list[Any], list]:
        keys = []
        while heap and heap[0][0] <= until:
            at, _, key = heapq.heappop(heap)
            if due_at.get(key) == at:
                del due_at[key]
                keys.append(key)
        if len(heap) > 2 * len(due_at) + 1024:  # stale entries of keys indexed again
            heap = [(t, next(self.sequence), k) for k, t in due_at.items()]
            heapq.heapify(heap)
        return keys, heap


def _get_keyed_state(self: Any, key: Any) -> Any:
    """``DirectStepContext.get_keyed_state``: the bundle's own state of ``key``, thawed from
    the step's resting state (Beam's copies the committed object instead)."""
    state = self.partial_keyed_state.get(key)
    if state is None:
        existing = self.existing_keyed_state
        if isinstance(existing, _IndexedKeyedStates):
            state = existing.thawed(key)
        else:
            if not existing.get(key):
                existing[key] = evaluation_context.DirectUnmergedState()
            state = existing[key].copy()
        self.partial_keyed_state[key] = state
    return state


def _is_empty(state: Any) -> bool:
    """No timers, no global state and no value but empty lists (what reading an unset tag leaves)."""
    return (
        not state.timers
        and not state.global_state
        and all(value == [] for tags in state.state.values() for value in tags.values())
    )


def _initialize_keyed_states(self: Any, root_transforms: Any, value_to_consumers: Any) -> dict[Any, Any]:
    transforms = list(root_transforms) + [c for consumers in value_to_consumers.values() for c in consumers]
    return {transform: _IndexedKeyedStates() for transform in transforms}


def _extract_transform_timers(self: Any) -> tuple[list[TimerFiring], bool]:
    states = self._keyed_states
    with self._lock:
        for key in states.take_written():
            states.index(key)
        processing_time = self._clock.time()
        candidates = dict.fromkeys(states.due(self._input_watermark))
        candidates.update(dict.fromkeys(states.due_realtime(processing_time)))
        fired: list[TimerFiring] = []
        has_realtime_timer = bool(states.realtime_due_at)
        for key in candidates:
            state = states.read_timers(key)
            if state is None:
                continue
            timers, had_realtime_timer = state.get_timers(
                watermark=self._input_watermark, processing_time=processing_time
            )
            has_realtime_timer = has_realtime_timer or had_realtime_timer
            for window, (name, time_domain, timestamp, dynamic_timer_tag) in timers:
                fired.append(
                    TimerFiring(key, window, name, time_domain, timestamp, dynamic_timer_tag=dynamic_timer_tag)
                )
            states.index(key)  # a due timer stays due (and is returned again) until its bundle clears it
        self._fired_timers.update(fired)
        return fired, has_realtime_timer


_original_call = executor.TransformExecutor.call


def _call_with_own_sampler(self: Any, state_sampler: Any) -> Any:
    """Run one bundle with a StateSampler of its own, so its counters land in its own container."""
    own = statesampler.StateSampler("", CounterFactory())
    statesampler.set_current_tracker(own)
    try:
        return _original_call(self, own)
    finally:
        statesampler.set_current_tracker(state_sampler)


class _EarliestHolds(dict):
    """One step's ``{encoded key: watermark hold}``, with the earliest hold found through a heap
    of (microseconds, key); an entry whose key was deleted or moved is dropped when it surfaces."""

    def __init__(self, holds: dict[Any, Any] | None = None) -> None:
        super().__init__()
        self._heap: list[tuple[int, Any]] = []
        for key, hold in (holds or {}).items():
            self[key] = hold

    def __setitem__(self, key: Any, hold: Any) -> None:
        super().__setitem__(key, hold)
        if hold is not None:
            heapq.heappush(self._heap, (hold.micros, key))
            if len(self._heap) > 4 * len(self) + 1024:  # mostly stale: rebuild from what is held
                self._heap = [(h.micros, k) for k, h in self.items() if h is not None]
                heapq.heapify(self._heap)

    def earliest(self) -> Any:
        heap = self._heap
        while heap:
            micros, key = heap[0]
            hold = self.get(key)
            if hold is not None and hold.micros == micros:
                return hold
            heapq.heappop(heap)
        return watermark_manager.WatermarkManager.WATERMARK_POS_INF


def _hold(self: Any, keyed_earliest_holds: dict[Any, Any]) -> None:
    """``_TransformWatermarks.hold``, keeping the holds in an ``_EarliestHolds``."""
    with self._lock:
        holds = self._keyed_earliest_holds
        if not isinstance(holds, _EarliestHolds):
            holds = self._keyed_earliest_holds = _EarliestHolds(holds)
        for key, hold_value in keyed_earliest_holds.items():
            if hold_value is None or hold_value == watermark_manager.WatermarkManager.WATERMARK_POS_INF:
                holds.pop(key, None)
            else:
                holds[key] = hold_value


def _refresh(self: Any) -> bool:
    """Beam 2.77's ``_TransformWatermarks.refresh``, the earliest hold read from the heap."""
    manager = watermark_manager.WatermarkManager
    with self._lock:
        min_pending_timestamp = manager.WATERMARK_POS_INF
        has_pending_elements = False
        for input_bundle in self._pending:
            for wv in input_bundle.get_elements_iterable():
                has_pending_elements = True
                if wv.timestamp < min_pending_timestamp:
                    min_pending_timestamp = wv.timestamp
        pending_holder = manager.WATERMARK_POS_INF
        if has_pending_elements:
            pending_holder = min_pending_timestamp - watermark_manager.TIME_GRANULARITY
        input_watermarks = [tw.output_watermark for tw in self._input_transform_watermarks]
        input_watermarks.append(manager.WATERMARK_POS_INF)
        producer_watermark = min(input_watermarks)
        self._input_watermark = max(self._input_watermark, min(pending_holder, producer_watermark))
        holds = self._keyed_earliest_holds
        earliest_hold = (
            holds.earliest()
            if isinstance(holds, _EarliestHolds)
            else min(holds.values(), default=manager.WATERMARK_POS_INF)
        )
        new_output_watermark = min(self._input_watermark, earliest_hold)
        advanced = new_output_watermark > self._output_watermark
        self._output_watermark = new_output_watermark
        return advanced


_NO_EXTRACTION: dict[tuple[str, int], Any] = {}


def _without_extraction_once(self: Any) -> Any:
    """``_CombiningValueStateTag.without_extraction``, made once per (tag name, combine function);
    the cached tag refers to the function, so its id is not reused while cached."""
    key = (self.tag, id(self.combine_fn))
    tag = _NO_EXTRACTION.get(key)
    if tag is None or tag.combine_fn.add_input.__self__ is not self.combine_fn:
        tag = _NO_EXTRACTION[key] = _ORIGINAL_WITHOUT_EXTRACTION(self)
    return tag


_ORIGINAL_WITHOUT_EXTRACTION = trigger._CombiningValueStateTag.without_extraction


def _output_releasing_late_holds(
    self: Any, window: Any, finished: bool, state: Any, output_watermark: Any, maybe_ontime: bool
) -> Any:
    """``GeneralTriggerDriver._output``; a pane after the on-time pane also clears the window's hold."""
    trigger_fn = self.trigger_fn
    late = isinstance(trigger_fn, trigger.AfterWatermark) and bool(trigger_fn.is_late(state.at(window, self.clock)))
    pane = _ORIGINAL_OUTPUT(self, window, finished, state, output_watermark, maybe_ontime)
    if late:
        state.clear_state(window, self.WATERMARK_HOLD)
    return pane


_ORIGINAL_OUTPUT = trigger.GeneralTriggerDriver._output


#: The garbage-collection timer's name, beside the trigger's own timers of a window.
GC_TIMER = "__garbage_collection"
#: Set for a window when elements were added and no pane fired since (Java's NonEmptyPanes).
_PENDING = trigger._CombiningValueStateTag("elements_since_pane", combiners.CountCombineFn())


def _collected_at(driver: Any, window: Any) -> Any:
    """The instant a window's state is collected: just after Beam drops its elements as expired
    (``input_watermark > window.end + allowed_lateness``); None for windows that never expire."""
    end = window.end + driver.allowed_lateness
    return end + TIME_GRANULARITY if end < MAX_TIMESTAMP else None


class _Accumulated:
    """Elements of a window already folded into one accumulator by the downstream CombineFn."""

    __slots__ = ("accumulator",)

    def __init__(self, accumulator: Any) -> None:
        self.accumulator = accumulator

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Accumulated) and other.accumulator == self.accumulator

    __hash__ = None  # type: ignore[assignment]  # as mutable as its accumulator

    def __repr__(self) -> str:
        return f"_Accumulated({self.accumulator!r})"


def _fold(combine_fn: Any, values: list[Any]) -> _Accumulated:
    """Raw values and earlier accumulators -> one new accumulator (none of the inputs is changed)."""
    folded = [v.accumulator for v in values if isinstance(v, _Accumulated)]
    raw = [v for v in values if not isinstance(v, _Accumulated)]
    if raw:
        folded.append(combine_fn.add_inputs(combine_fn.create_accumulator(), raw))
    return _Accumulated(folded[0] if len(folded) == 1 else combine_fn.merge_accumulators(folded))


def _combine_values(self: Any, element: Any, *args: Any, **kwargs: Any) -> Any:
    """``CombineValuesDoFn.process``, taking the window's folded accumulators as they are."""
    values = element[1]
    if not isinstance(values, list) or not any(isinstance(v, _Accumulated) for v in values):
        return _ORIGINAL_COMBINE_VALUES(self, element, *args, **kwargs)
    accumulator = _fold(self.combinefn, list(values)).accumulator
    return [(element[0], self.combinefn.extract_output(accumulator))]


_ORIGINAL_COMBINE_VALUES = core.CombineValuesDoFn.process


def _start_bundle_knowing_the_combine(self: Any) -> None:
    """``_StreamingGroupAlsoByWindowEvaluator.start_bundle``; its driver is told the CombineFn
    of the step it feeds when that step is a ``CombinePerKey``'s combine and its only consumer."""
    _ORIGINAL_START_BUNDLE(self)
    consumers = list(self._evaluation_context._value_to_consumers.get(self.output_pcollection, ()))
    combine_fn = None
    if len(consumers) == 1:
        transform = consumers[0].transform
        dofn = getattr(transform, "fn", None)
        if (
            isinstance(transform, core.ParDo)
            and isinstance(dofn, core.CombineValuesDoFn)
            and not transform.args
            and not transform.kwargs
            and not consumers[0].side_inputs
        ):
            combine_fn = dofn.combinefn
    self.driver.combine_fn = combine_fn


_ORIGINAL_START_BUNDLE = transform_evaluator._StreamingGroupAlsoByWindowEvaluator.start_bundle


def _process_elements_collecting_garbage(
    self: Any, state: Any, windowed_values: Any, output_watermark: Any, input_watermark: Any = MIN_TIMESTAMP
) -> Iterator[Any]:
    """``GeneralTriggerDriver.process_elements``; then each window that received elements has its
    collection timer, and is marked as holding elements no pane has shown yet unless it fired."""
    windowed_values = list(windowed_values)
    fired: set[Any] = set()
    for pane in _process_elements(self, state, windowed_values, output_watermark, input_watermark):
        fired.update(pane.windows)
        yield pane
    merging = trigger.MergeableStateAdapter(state)
    known = merging.window_ids
    touched = set()
    for window in {w for wv in windowed_values for w in wv.windows}:
        if input_watermark > window.end + self.allowed_lateness:  # expired: dropped, as Beam's driver does
            continue
        if window not in known and isinstance(window, IntervalWindow):  # merged into one that contains it
            window = next((k for k in known if k.start <= window.start and window.end <= k.end), None)
        if window is not None:
            touched.add(window)
    combine_fn = getattr(self, "combine_fn", None)
    for window in touched:
        _merge_state_of_merged_windows(state, merging, window)
        if combine_fn is not None:
            values = merging.get_state(window, self.ELEMENTS)
            if len(values) > 1:
                merging.clear_state(window, self.ELEMENTS)
                merging.add_state(window, self.ELEMENTS, _fold(combine_fn, values))
        collect_at = _collected_at(self, window)
        if collect_at is None:
            continue
        merging.set_timer(window, GC_TIMER, TimeDomain.WATERMARK, collect_at)
        if window not in fired and not merging.get_state(window, _PENDING):
            if not merging.get_state(window, self.TOMBSTONE):
                merging.add_state(window, _PENDING, 1)


def _merge_state_of_merged_windows(state: Any, merging: Any, window: Any) -> None:
    """Move the state of every window merged into ``window`` under the window's first id, as
    Java's runners merge state when windows merge (Beam's Python adapter keeps each merged
    window's id and state and reads across them: a session kept a state dict, lists and timers
    for every click). List and combining tags are lists of inputs, so they are concatenated in
    the order the adapter reads them; a timer of a merged-away id is kept only if the first id
    has none of that name (it was set for a shorter window, and fires and finds nothing)."""
    ids = merging.window_ids.get(window)
    if not ids or len(ids) == 1:
        return
    first, rest = ids[0], ids[1:]
    target = state.state[first]
    for raw_id in rest:
        for tag, values in state.state.pop(raw_id, {}).items():
            target[tag].extend(values)  # the adapter allows list and combining tags only
        moved = state.timers.pop(raw_id, None)
        if moved:
            timers = state.timers[first]
            for name, timestamp in moved.items():
                timers.setdefault(name, timestamp)
    for tag in [tag for tag, values in target.items() if not values]:
        del target[tag]
    if not target:
        state.state.pop(first, None)
    merging.window_ids[window] = [first]
    merging._persist_window_ids()


_ORIGINAL_PROCESS_ELEMENTS = trigger.GeneralTriggerDriver.process_elements


class _TriggerMergeContext(WindowFn.MergeContext):
    """The merge context of ``GeneralTriggerDriver.process_elements``, defined once (fix 12)."""

    def __init__(self, windows: Any, driver: Any, state: Any, merged_away: dict[Any, Any]) -> None:
        super().__init__(windows)
        self.driver, self.state, self.merged_away = driver, state, merged_away

    def merge(self, to_be_merged: Any, merge_result: Any) -> None:
        driver, state = self.driver, self.state
        for window in to_be_merged:
            if window != merge_result:
                self.merged_away[window] = merge_result
                # Clear state associated with PaneInfo since it is not preserved across merges.
                state.clear_state(window, driver.INDEX)
                state.clear_state(window, driver.NONSPECULATIVE_INDEX)
        state.merge(to_be_merged, merge_result)
        driver.trigger_fn.on_merge(to_be_merged, merge_result, state.at(merge_result, driver.clock))


def _process_elements(
    self: Any, state: Any, windowed_values: Any, output_watermark: Any, input_watermark: Any = MIN_TIMESTAMP
) -> Iterator[Any]:
    """``GeneralTriggerDriver.process_elements`` of Beam 2.77.0, line for line, except that its
    merge context is one class (``_TriggerMergeContext``) instead of a class defined in every
    call that merges (fix 12)."""
    if self.is_merging:
        state = trigger.MergeableStateAdapter(state)

    windows_to_elements = collections.defaultdict(list)
    for wv in windowed_values:
        for window in wv.windows:
            # ignore expired windows
            if input_watermark > window.end + self.allowed_lateness:
                continue
            windows_to_elements[window].append((wv.value, wv.timestamp))

    # First handle merging.
    if self.is_merging:
        old_windows = set(state.known_windows())
        all_windows = old_windows.union(list(windows_to_elements))

        if all_windows != old_windows:
            merged_away: dict[Any, Any] = {}
            self.window_fn.merge(_TriggerMergeContext(all_windows, self, state, merged_away))

            merged_windows_to_elements = collections.defaultdict(list)
            for window, values in windows_to_elements.items():
                while window in merged_away:
                    window = merged_away[window]
                merged_windows_to_elements[window].extend(values)
            windows_to_elements = merged_windows_to_elements

            for window in merged_away:
                state.clear_state(window, self.WATERMARK_HOLD)

    # Next handle element adding.
    for window, elements in windows_to_elements.items():
        if state.get_state(window, self.TOMBSTONE):
            continue
        # Add watermark hold.
        output_time = self.timestamp_combiner_impl.merge(
            window,
            (
                element_output_time
                for element_output_time in (
                    self.timestamp_combiner_impl.assign_output_time(window, timestamp)
                    for unused_value, timestamp in elements
                )
                if element_output_time >= output_watermark
            ),
        )
        if output_time is not None:
            state.add_state(window, self.WATERMARK_HOLD, output_time)

        context = state.at(window, self.clock)
        for value, _timestamp in elements:
            state.add_state(window, self.ELEMENTS, value)
            self.trigger_fn.on_element(value, window, context)

        # Maybe fire this window.
        if self.trigger_fn.should_fire(TimeDomain.WATERMARK, input_watermark, window, context):
            finished = self.trigger_fn.on_fire(input_watermark, window, context)
            yield self._output(window, finished, state, output_watermark, False)


def _process_timer_collecting_garbage(
    self: Any,
    window_id: Any,
    name: str,
    time_domain: Any,
    timestamp: Any,
    state: Any,
    input_watermark: Any = None,
) -> Iterator[Any]:
    """``GeneralTriggerDriver.process_timer``, plus the collection timer: the window's own
    event-time timers due by then fire first (a drain passes a window's end and its collection
    at once, and the runner fires a key's timers in the order they were set: its ON_TIME pane
    would be lost), then a last pane if elements arrived since the previous pane, then every
    state and timer of the window is deleted."""
    merging = trigger.MergeableStateAdapter(state)
    window = next((w for w, ids in merging.window_ids.items() if window_id in ids), None)
    if window is None:  # collected earlier in this work item; Beam's own would raise
        return
    if name != GC_TIMER:
        yield from _ORIGINAL_PROCESS_TIMER(self, window_id, name, time_domain, timestamp, state, input_watermark)
        return
    collect_at = _collected_at(self, window)
    if collect_at is None or timestamp < collect_at:  # set before the window merged into a longer one
        return
    for raw_id in list(merging.window_ids[window]):
        for (timer, domain, tag), at in sorted(state.timers.get(raw_id, {}).items(), key=lambda item: item[1]):
            if domain == TimeDomain.WATERMARK and timer != GC_TIMER and at <= timestamp:
                state.clear_timer(raw_id, timer, domain, tag)
                yield from _ORIGINAL_PROCESS_TIMER(self, raw_id, timer, domain, at, state, input_watermark)
    if merging.get_state(window, _PENDING) and not merging.get_state(window, self.TOMBSTONE):
        yield self._output(window, True, merging, timestamp, True)
    for raw_id in merging.window_ids.pop(window):
        state.state.pop(raw_id, None)
        state.timers.pop(raw_id, None)
    if merging.window_ids:
        merging._persist_window_ids()
    else:
        state.global_state.pop(trigger.MergeableStateAdapter.WINDOW_IDS.tag, None)


_ORIGINAL_PROCESS_TIMER = trigger.GeneralTriggerDriver.process_timer


def _output_releasing_late_holds_and_pending(
    self: Any, window: Any, finished: bool, state: Any, output_watermark: Any, maybe_ontime: bool
) -> Any:
    pane = _output_releasing_late_holds(self, window, finished, state, output_watermark, maybe_ontime)
    state.clear_state(window, _PENDING)
    return pane


def _add_state_once_per_hold(self: Any, window: Any, tag: Any, value: Any) -> None:
    """``InMemoryUnmergedState.add_state``; a window keeps its watermark holds combined into one
    (the driver adds one for every bundle of a window, and reads them only combined, with the
    combiner's associative min or max: a session kept one Timestamp per click)."""
    if isinstance(tag, trigger._WatermarkHoldStateTag):
        holds = self.state[window][tag.tag]
        if holds:
            self.state[window][tag.tag] = [tag.timestamp_combiner_impl.combine_all([*holds, value])]
            return
    _ORIGINAL_ADD_STATE(self, window, tag, value)


_ORIGINAL_ADD_STATE = trigger.InMemoryUnmergedState.add_state


def _window_state() -> collections.defaultdict:
    return collections.defaultdict(list)


def _copy_state(self: Any) -> Any:
    """``InMemoryUnmergedState.copy``: the same containers, new at every level, immutable
    timestamps and windows shared instead of deep-copied."""
    cloned = trigger.InMemoryUnmergedState(defensive_copy=self.defensive_copy)
    cloned.state = collections.defaultdict(_window_state)  # not a new lambda for every copy
    for window, timers in self.timers.items():
        cloned.timers[window] = dict(timers)
    window_ids = trigger.MergeableStateAdapter.WINDOW_IDS.tag
    cloned.global_state = {
        tag: {w: list(ids) for w, ids in value.items()} if tag == window_ids else copy.deepcopy(value)
        for tag, value in self.global_state.items()
    }
    for window, tags in self.state.items():
        target = cloned.state[window]
        for tag, value in tags.items():
            target[tag] = value[:] if type(value) is list else copy.copy(value)
    return cloned


class _BoundedQueue(queue.Queue):
    """The TestStream service reader's buffer (its only Queue), bounded."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize or RUNAHEAD_EVENTS)


class _DoFnOnce:
    """``function(dofn)`` computed once per DoFn object (the object is kept, so its id is not reused)."""

    def __init__(self, function: Any) -> None:
        self.function, self.results = function, {}

    def __call__(self, dofn: Any) -> Any:
        hit = self.results.get(id(dofn))
        if hit is None or hit[0] is not dofn:
            hit = self.results[id(dofn)] = (dofn, self.function(dofn))
        return hit[1]


class _PicklerWithDoFnCopies:
    """transform_evaluator's ``pickler``: ``roundtrip`` of a DoFn made once, the rest Beam's own."""

    def __init__(self) -> None:
        self.roundtrip = _DoFnOnce(pickler.roundtrip)

    def __getattr__(self, name: str) -> Any:
        return getattr(pickler, name)


def _patches() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement); the per-DoFn caches are new for every scope."""
    specs, stateful = _DoFnOnce(userstate.get_dofn_specs), _DoFnOnce(userstate.is_stateful_dofn)
    return [
        (test_stream_impl, "Queue", _BoundedQueue),
        (evaluation_context.EvaluationContext, "_initialize_keyed_states", _initialize_keyed_states),
        (watermark_manager._TransformWatermarks, "extract_transform_timers", _extract_transform_timers),
        (executor.TransformExecutor, "call", _call_with_own_sampler),
        (evaluation_context.DirectStepContext, "get_keyed_state", _get_keyed_state),
        (transform_evaluator, "pickler", _PicklerWithDoFnCopies()),
        (watermark_manager._TransformWatermarks, "hold", _hold),
        (watermark_manager._TransformWatermarks, "refresh", _refresh),
        (trigger._CombiningValueStateTag, "without_extraction", _without_extraction_once),
        (trigger.GeneralTriggerDriver, "_output", _output_releasing_late_holds_and_pending),
        (trigger.GeneralTriggerDriver, "process_elements", _process_elements_collecting_garbage),
        (trigger.GeneralTriggerDriver, "process_timer", _process_timer_collecting_garbage),
        (core.CombineValuesDoFn, "process", _combine_values),
        (trigger.InMemoryUnmergedState, "copy", _copy_state),
        (trigger.InMemoryUnmergedState, "add_state", _add_state_once_per_hold),
        (
            transform_evaluator._StreamingGroupAlsoByWindowEvaluator,
            "start_bundle",
            _start_bundle_knowing_the_combine,
        ),
        (userstate, "get_dofn_specs", specs),
        (userstate, "is_stateful_dofn", stateful),
        (transform_evaluator, "get_dofn_specs", specs),
        (transform_evaluator, "is_stateful_dofn", stateful),
    ]


@contextmanager
def patched_direct_runner() -> Iterator[bool]:
    """While it is open, DirectRunner pipelines started in this process run with the fixes;
    yields whether they are applied (False on a Beam version other than BEAM_VERSION)."""
    if beam.__version__ != BEAM_VERSION:
        _LOG.warning(
            "Beam %s is not %s, which the local runner's fixes were written for: running without "
            "them (slower, and counters undercount)",
            beam.__version__,
            BEAM_VERSION,
        )
        yield False
        return
    patches = _patches()
    saved = [(owner, name, vars(owner)[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield True
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
