"""The local runner's fixes (beam_pipelines/local/direct_runner_fixes.py): same output as Beam's
own runner, counters that count every bundle, and a pin that fails when Beam moves."""

from __future__ import annotations

import threading

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterProcessingTime, AfterWatermark
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer

from beam_pipelines.local.direct_runner_fixes import BEAM_VERSION, patched_direct_runner

_OUTPUTS: dict[str, list] = {}
_LOCK = threading.Lock()
KEYS, BATCHES, PER_BATCH = 40, 25, 40


def test_the_fixes_are_written_for_the_installed_beam() -> None:
    """When Beam is upgraded this fails: check the patched methods against the new DirectRunner
    (and whether upstream fixed them), then move BEAM_VERSION."""
    assert beam.__version__ == BEAM_VERSION


class _CountAndKey(beam.DoFn):
    def setup(self) -> None:
        self.seen = Metrics.counter("fixes", "seen")

    def process(self, value: int):
        self.seen.inc()
        yield value % KEYS, value


class _SumUntilTimer(beam.DoFn):
    """Per key: sums values and emits the sum when the watermark passes 10 s after the first."""

    TOTAL = ReadModifyWriteStateSpec("total", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        total=beam.DoFn.StateParam(TOTAL),
        flush=beam.DoFn.TimerParam(FLUSH),
    ):
        if total.read() is None:
            flush.set(timestamp + 10)
        total.write((total.read() or 0) + element[1])

    @on_timer(FLUSH)
    def _flush(self, key=beam.DoFn.KeyParam, total=beam.DoFn.StateParam(TOTAL)):
        yield key, total.read()
        total.clear()


class _Collect(beam.DoFn):
    def __init__(self, name: str):
        self.name = name

    def process(self, element):
        with _LOCK:
            _OUTPUTS.setdefault(self.name, []).append(element)


def _run(name: str) -> int:
    stream = test_stream.TestStream()
    for batch in range(BATCHES):
        stream.add_elements(
            [beam.window.TimestampedValue(batch * PER_BATCH + i, batch * 3 + i * 0.01) for i in range(PER_BATCH)]
        )
        stream.advance_watermark_to(batch * 3 + 1)
    stream.advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(runner="DirectRunner", options=options)
    keyed = pipeline | stream | "Key" >> beam.ParDo(_CountAndKey())
    keyed | "Sum until timer" >> beam.ParDo(_SumUntilTimer()) | "Collect sums" >> beam.ParDo(_Collect(f"{name}/sums"))
    (
        keyed
        | "Sessions" >> beam.WindowInto(window.Sessions(2))
        | "Group" >> beam.GroupByKey()
        | "Sorted" >> beam.MapTuple(lambda k, vs: (k, sorted(vs)))
        | "Collect sessions" >> beam.ParDo(_Collect(f"{name}/sessions"))
    )
    result = pipeline.run()
    result.wait_until_finish()
    (seen,) = [c.committed for c in result.metrics().query()["counters"] if c.key.metric.name == "seen"]
    return seen


def test_output_is_beams_own_and_every_bundle_is_counted() -> None:
    _OUTPUTS.clear()
    _run("plain")
    with patched_direct_runner() as applied:
        assert applied
        seen = _run("fixed")
    assert sorted(_OUTPUTS["fixed/sums"]) == sorted(_OUTPUTS["plain/sums"])
    assert sorted(_OUTPUTS["fixed/sessions"]) == sorted(_OUTPUTS["plain/sessions"])
    # an independent count: every element is in exactly one session and one sum
    assert sum(len(values) for _, values in _OUTPUTS["fixed/sessions"]) == BATCHES * PER_BATCH
    assert sum(total for _, total in _OUTPUTS["fixed/sums"]) == sum(range(BATCHES * PER_BATCH))
    assert seen == BATCHES * PER_BATCH  # without the fix, bundles after a thread's first were lost


def test_the_patch_is_undone_on_exit() -> None:
    from apache_beam.runners.direct import executor, watermark_manager

    before = (executor.TransformExecutor.call, watermark_manager._TransformWatermarks.extract_transform_timers)
    with patched_direct_runner():
        assert executor.TransformExecutor.call is not before[0]
    assert (executor.TransformExecutor.call, watermark_manager._TransformWatermarks.extract_transform_timers) == before


def test_the_earliest_hold_is_the_minimum_of_the_holds_under_any_updates() -> None:
    """Fix 5 against min() over a plain dict, through random sets, moves and deletes."""
    import random

    from apache_beam.utils.timestamp import Timestamp

    from beam_pipelines.local.direct_runner_fixes import _EarliestHolds

    rng, holds, plain = random.Random(7), _EarliestHolds(), {}
    infinity = Timestamp.of(2**62 / 1e6)
    for step in range(20_000):
        key = b"k%d" % rng.randrange(300)
        if rng.random() < 0.2:
            holds.pop(key, None)
            plain.pop(key, None)
        else:
            hold = Timestamp(micros=rng.randrange(10**9))
            holds[key], plain[key] = hold, hold
        expected = min(plain.values(), default=None)
        earliest = holds.earliest()
        assert (earliest if plain else None) == expected, step
        assert earliest < infinity or not plain
    assert len(holds._heap) <= 4 * len(holds) + 1024  # stale entries do not pile up


def test_merging_state_tags_are_made_once() -> None:
    """Fix 6: the same tag and combine function give the same no-extraction tag, which combines alike."""
    from apache_beam.transforms import combiners, trigger

    tag = trigger._CombiningValueStateTag("count", combiners.CountCombineFn())
    with patched_direct_runner():
        first, again = tag.without_extraction(), tag.with_prefix("").without_extraction()
        assert first is again
    plain = tag.without_extraction()
    assert first is not plain
    for made in (first, plain):
        fn = made.combine_fn
        assert fn.extract_output(fn.add_input(fn.add_input(fn.create_accumulator(), "a"), "b")) == 2


def _accumulating_sessions(stream, gap: float, lateness: float):
    """A streaming DirectRunner pipeline reading ``stream`` into session windows with a late
    trigger and accumulating panes (the jobs' windowing); returns the pipeline and the windows."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(runner="DirectRunner", options=options)
    return pipeline, pipeline | stream | "Sessions" >> beam.WindowInto(
        window.Sessions(gap),
        trigger=AfterWatermark(late=AfterCount(1)),
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=lateness,
    )


def _late_extension(name: str) -> None:
    """A session's on-time pane, then a late element that extends the session past the watermark."""
    stream = (
        test_stream.TestStream()
        .add_elements([beam.window.TimestampedValue(("u", 1), 10)])
        .advance_watermark_to(45)  # [10, 40) is on time at 40
        .add_elements([beam.window.TimestampedValue(("u", 2), 30)])  # late: [10, 60) now
        .advance_watermark_to(100)
        .advance_watermark_to_infinity()
    )
    pipeline, sessions = _accumulating_sessions(stream, gap=30, lateness=300)
    (
        sessions
        | "Group" >> beam.GroupByKey()
        | "Panes" >> beam.Map(lambda kv, w=beam.DoFn.WindowParam: (float(w.start), float(w.end), sorted(kv[1])))
        | "Collect" >> beam.ParDo(_Collect(name))
    )
    pipeline.run().wait_until_finish()


def test_a_late_pane_releases_its_windows_hold() -> None:
    """Fix 7: Beam's runner keeps the hold of a late pane whose window ends past the watermark, and
    the run never ends (its stall error); with the fix the run ends with both panes."""
    _OUTPUTS.clear()
    with pytest.raises(TypeError, match="exceptions must derive from BaseException"):  # the stall, as Beam raises it
        _late_extension("plain")
    with patched_direct_runner():
        _late_extension("fixed")
    assert _OUTPUTS["fixed"] == [(10.0, 40.0, [1]), (10.0, 60.0, [1, 2])]


def _windowing(window_fn, late_count: int = 1, lateness: float = 120):
    from apache_beam.transforms.core import Windowing

    return Windowing(
        window_fn,
        triggerfn=AfterWatermark(late=AfterCount(late_count)),
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=lateness,
    )


def _random_steps(seed: int, lateness: float, gap: float) -> list[tuple[str, object]]:
    """Bundles of on-time, late (within the allowed lateness) and expired elements, the watermark
    moving on between them, then a watermark past every window's end plus the allowed lateness."""
    import random

    rng, steps, watermark = random.Random(seed), [], 0.0
    for n in range(300):
        bundle = []
        for i in range(rng.randrange(1, 4)):
            kind = rng.random()
            if kind < 0.7:
                at = watermark + rng.uniform(0, 20)
            elif kind < 0.9:
                at = watermark - rng.uniform(0, lateness)  # late; its own window has not expired
            else:
                at = watermark - lateness - gap - rng.uniform(1, 100)  # its window has expired: dropped
            bundle.append((f"e{n}.{i}", max(at, 0.0)))
        steps.append(("elements", bundle))
        watermark += rng.uniform(0, 15) if rng.random() < 0.8 else rng.uniform(gap, 4 * gap)  # quiet spells
        steps.append(("watermark", watermark))
    steps.append(("watermark", watermark + 100 + lateness))  # past the last window (ends by +80) and its lateness
    return steps


@pytest.mark.parametrize("window_fn", ["sessions", "fixed"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_are_collected_and_the_panes_are_beams_own(window_fn, seed) -> None:
    """Fix 8 against Beam's own driver: the same panes, in the same order, with the same pane
    info; and once the watermark has passed every window's end plus its allowed lateness, the
    key holds nothing (Beam's own keeps every element it was ever given)."""
    from tests.support.trigger_driver import drive, held_elements, is_empty

    gap, lateness = 30.0, 120.0
    windowing = _windowing(window.Sessions(gap) if window_fn == "sessions" else window.FixedWindows(60), 1, lateness)
    steps = _random_steps(seed, lateness, gap)
    plain, plain_state = drive(windowing, steps)
    with patched_direct_runner():
        fixed, fixed_state = drive(windowing, steps)
    assert fixed == plain
    assert len(plain) > 100 and any(p.timing == "LATE" for p in plain)
    assert held_elements(plain_state) > 500  # Beam's own: everything that was not dropped as expired
    assert held_elements(fixed_state) == 0 and is_empty(fixed_state)


def test_a_window_collected_with_elements_no_pane_showed_gets_a_last_pane() -> None:
    """As Java's runners close a window (ClosingBehavior.FIRE_IF_NON_EMPTY): a late element the
    late trigger has not fired for (AfterCount(2), one element) comes out in a last pane when the
    window is collected; Beam's Python driver never emits it."""
    from tests.support.trigger_driver import Pane, drive, is_empty

    windowing = _windowing(window.FixedWindows(60), late_count=2, lateness=120)
    steps = [
        ("elements", [("a", 10), ("b", 20)]),
        ("watermark", 70),  # on time: [a, b]
        ("elements", [("c", 30)]),  # late, one of the two the late trigger waits for
        ("watermark", 180),  # 60 + 120: still within the allowed lateness
        ("watermark", 181),  # past it: collected
        ("elements", [("d", 40)]),  # expired: dropped
        ("watermark", 10_000),
    ]
    plain, _ = drive(windowing, steps)
    with patched_direct_runner():
        fixed, state = drive(windowing, steps)
    on_time = Pane(0.0, 60.0, ("a", "b"), "ON_TIME", True, False, 0)
    assert plain == [on_time]
    assert fixed == [on_time, Pane(0.0, 60.0, ("a", "b", "c"), "LATE", False, True, 1)]
    assert is_empty(state)


class _Summary(beam.CombineFn):
    """Count and sorted values: enough to see any element lost, doubled or misplaced."""

    def create_accumulator(self):
        return (0, ())

    def add_input(self, acc, value):
        return acc[0] + 1, tuple(sorted(acc[1] + (value,)))

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), tuple(sorted(v for a in accs for v in a[1]))

    def extract_output(self, acc):
        return acc


def _combined_panes(name: str, seed: int) -> None:
    """Sessions with late elements, combined per key, through the streaming DirectRunner."""
    import random

    rng, stream, watermark = random.Random(seed), test_stream.TestStream(), 0
    for n in range(120):
        stream.add_elements(
            [
                beam.window.TimestampedValue((f"k{rng.randrange(5)}", n * 10 + i), watermark + rng.uniform(-30, 20))
                for i in range(rng.randrange(1, 6))
            ]
        )
        watermark += rng.choice([1, 2, 5, 40])
        stream.advance_watermark_to(watermark)
    stream.advance_watermark_to_infinity()
    pipeline, sessions = _accumulating_sessions(stream, gap=10, lateness=30)
    (
        sessions
        | "Combine" >> beam.CombinePerKey(_Summary())
        | "Panes"
        >> beam.Map(
            lambda kv, w=beam.DoFn.WindowParam, p=beam.DoFn.PaneInfoParam: (
                kv[0],
                float(w.start),
                float(w.end),
                p.timing,
                p.index,
                kv[1],
            )
        )
        | "Collect" >> beam.ParDo(_Collect(name))
    )
    pipeline.run().wait_until_finish()


@pytest.mark.parametrize("seed", [5, 6])
def test_combined_windows_hold_one_accumulator_and_give_beams_panes(seed, monkeypatch) -> None:
    """Fixes 8 and 9 in the runner: a CombinePerKey over merging windows with late data gives the
    same panes, pane by pane, as the runner without them (on-time, late, dropped as expired).
    (Beam's own runner cannot run this at all: a late element extends a session, fix 7.)"""
    from apache_beam.runners.direct import transform_evaluator
    from apache_beam.transforms import core, trigger

    from beam_pipelines.local import direct_runner_fixes as fixes

    _OUTPUTS.clear()
    with patched_direct_runner(), monkeypatch.context() as without:
        without.setattr(trigger.GeneralTriggerDriver, "process_elements", fixes._ORIGINAL_PROCESS_ELEMENTS)
        without.setattr(trigger.GeneralTriggerDriver, "process_timer", fixes._ORIGINAL_PROCESS_TIMER)
        without.setattr(core.CombineValuesDoFn, "process", fixes._ORIGINAL_COMBINE_VALUES)
        without.setattr(
            transform_evaluator._StreamingGroupAlsoByWindowEvaluator, "start_bundle", fixes._ORIGINAL_START_BUNDLE
        )
        _combined_panes("plain", seed)
    with patched_direct_runner():
        _combined_panes("fixed", seed)
    assert sorted(_OUTPUTS["fixed"]) == sorted(_OUTPUTS["plain"])
    assert len(_OUTPUTS["plain"]) > 50 and any(pane[3] == 2 for pane in _OUTPUTS["plain"])  # some LATE panes


def test_a_window_of_a_combine_holds_one_accumulator() -> None:
    """Fix 9 in the driver: a window's elements are folded into one accumulator per bundle, and
    the panes combine to the same values as Beam's driver gives."""
    from apache_beam.transforms.core import Windowing

    from beam_pipelines.local import direct_runner_fixes as fixes
    from tests.support.trigger_driver import drive

    windowing = Windowing(
        window.Sessions(30),
        triggerfn=AfterWatermark(late=AfterCount(1)),
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=120,
    )
    steps = _random_steps(4, 120, 30)[:-1]  # stop before the last windows are collected
    plain, _ = drive(windowing, steps)
    with patched_direct_runner():
        fixed, state = drive(windowing, steps, combine_fn=_Summary())
    summary = _Summary()
    assert [(p.start, p.end, p.timing, p.index) for p in fixed] == [(p.start, p.end, p.timing, p.index) for p in plain]
    for mine, beams in zip(fixed, plain):
        assert fixes._fold(summary, list(mine.values)).accumulator == summary.apply(beams.values)
    open_windows = [tags["elements"] for tags in state.state.values() if tags.get("elements")]
    assert open_windows and all(len(elements) == 1 for elements in open_windows)
    # and a session merged from many clicks keeps one id, one state dict (Beam's: one per click)
    window_ids = state.global_state["window_ids"]
    assert all(len(ids) == 1 for ids in window_ids.values()) and len(state.state) <= len(window_ids)
    holds = [tags["watermark"] for tags in state.state.values() if tags.get("watermark")]
    assert holds and all(len(h) == 1 for h in holds)  # one combined hold, not one per bundle


def test_a_copied_state_equals_beams_deep_copy_and_shares_nothing_mutable() -> None:
    """Fix 10: the copy the runner makes of a key's state for each bundle holds what Beam's
    deep copy holds, and writing to either leaves the other as it was."""
    from apache_beam.transforms import trigger

    from tests.support.trigger_driver import drive

    windowing = _windowing(window.Sessions(30), 1, 120)
    _, state = drive(windowing, _random_steps(9, 120, 30)[:200])
    assert state.timers and state.global_state and state.state
    beams = trigger.InMemoryUnmergedState.copy(state)
    with patched_direct_runner():
        mine = state.copy()
    as_plain = lambda s: (  # noqa: E731
        {w: dict(t) for w, t in s.timers.items()},
        s.global_state,
        {w: dict(tags) for w, tags in s.state.items()},
    )
    assert as_plain(mine) == as_plain(beams) == as_plain(state)
    before = as_plain(trigger.InMemoryUnmergedState.copy(state))
    window_id = next(iter(mine.state))
    mine.state[window_id]["elements"].append("new")
    mine.timers[next(iter(mine.timers))][("t", "WATERMARK", "")] = 0
    next(iter(mine.global_state["window_ids"].values())).append(999)
    assert as_plain(state) == before


def test_a_resting_state_thaws_to_the_same_state_and_is_small() -> None:
    """Fix 11: between bundles a key's state rests as bytes; thawed, it is the state it was (but
    for the empty lists reading an unset tag leaves), independent of every other thaw, and its
    bytes name no class or state tag: those are numbered once per process, data never is."""
    import pickle

    from beam_pipelines.local import direct_runner_fixes as fixes
    from tests.support.trigger_driver import drive

    windowing = _windowing(window.Sessions(30), 1, 120)
    with patched_direct_runner():
        _, state = drive(windowing, _random_steps(9, 120, 30)[:200], combine_fn=_Summary())
    assert state.timers and state.global_state and state.state
    plain = lambda s: (  # noqa: E731
        {w: dict(t) for w, t in s.timers.items() if t},
        s.global_state,
        {w: {tag: v for tag, v in tags.items() if v != []} for w, tags in s.state.items()},
    )
    resting = fixes._rest(state)
    shared = len(fixes._SHARED.objects)
    first, second = fixes._thaw(resting), fixes._thaw(resting)
    assert plain(first) == plain(second) == plain(state)
    window_id = next(iter(first.state))
    first.state[window_id]["elements"].append("new")
    next(iter(first.global_state["window_ids"].values())).append(999)
    assert plain(fixes._thaw(resting)) == plain(state)

    assert b"apache_beam" not in resting.blob and b"elements" not in resting.blob
    assert b"WATERMARK" not in resting.blob and b"Timestamp" not in resting.blob
    assert len(resting.blob) < len(pickle.dumps(plain(state), protocol=pickle.HIGHEST_PROTOCOL))
    # another key's state with other data adds no shared name: only classes and tags are numbered
    first.state[window_id]["elements"].append(fixes._Accumulated(("a user id", 7)))
    fixes._rest(first)
    assert len(fixes._SHARED.objects) == shared
    assert "a user id" not in fixes._SHARED.number


def test_a_state_that_cannot_be_pickled_rests_as_it_is() -> None:
    from apache_beam.transforms import trigger

    from beam_pipelines.local import direct_runner_fixes as fixes

    state = trigger.InMemoryUnmergedState()
    state.state[1]["tag"].append(threading.Lock())
    assert fixes._rest(state) is state
    copied = fixes._thaw(state)
    assert copied is not state and copied.state[1]["tag"] == state.state[1]["tag"]


def _early_panes(name: str) -> None:
    """Sessions of 40 keys with EARLY panes every 5 s of processing time, on-time panes after."""
    stream = test_stream.TestStream()
    for step in range(30):
        stream.add_elements(
            [beam.window.TimestampedValue((f"k{(step * 7 + i) % 40}", step), step * 2) for i in range(6)]
        )
        stream.advance_processing_time(2)
        stream.advance_watermark_to(step * 2 - 20)
    stream.advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(runner="DirectRunner", options=options)
    (
        pipeline
        | stream
        | "Sessions"
        >> beam.WindowInto(
            window.Sessions(10),
            trigger=AfterWatermark(early=AfterProcessingTime(5)),
            accumulation_mode=AccumulationMode.ACCUMULATING,
        )
        | "Group" >> beam.GroupByKey()
        | "Panes"
        >> beam.Map(
            lambda kv, w=beam.DoFn.WindowParam, p=beam.DoFn.PaneInfoParam: (kv[0], float(w.start), p.timing, len(kv[1]))
        )
        | "Collect" >> beam.ParDo(_Collect(name))
    )
    pipeline.run().wait_until_finish()


def test_processing_time_timers_fire_as_beams_own_runner_fires_them() -> None:
    """Fix 2 indexes keys by their earliest processing-time timer too: EARLY panes (a processing-time
    trigger) come out as Beam's own runner gives them, which walks every key for them."""
    _OUTPUTS.clear()
    _early_panes("plain")
    with patched_direct_runner():
        _early_panes("fixed")
    assert sorted(_OUTPUTS["fixed"]) == sorted(_OUTPUTS["plain"])
    assert sum(1 for pane in _OUTPUTS["plain"] if pane[2] == 0) > 20  # EARLY panes (timing 0) among them


def _early_then_drained(gc_first: bool) -> list:
    """One session (two clicks, merged), its EARLY pane, then a watermark past its end and its
    collection at once, as a drain moves it; the due timers fired in the order asked."""
    from apache_beam.runners.direct.clock import TestClock
    from apache_beam.transforms import trigger
    from apache_beam.transforms.core import Windowing
    from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
    from apache_beam.utils.windowed_value import WindowedValue

    from beam_pipelines.local.direct_runner_fixes import GC_TIMER
    from tests.support.trigger_driver import _pane

    windowing = Windowing(
        window.Sessions(10),
        triggerfn=AfterWatermark(early=AfterProcessingTime(5), late=AfterCount(1)),
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=30,
    )
    clock = TestClock()
    driver = trigger.create_trigger_driver(windowing, clock=clock)
    state, panes = trigger.InMemoryUnmergedState(), []
    for value, at in (("a", 1), ("b", 5)):
        element = WindowedValue(value, Timestamp.of(at), [window.IntervalWindow(at, at + 10)])
        panes += driver.process_elements(state, [element], MIN_TIMESTAMP, MIN_TIMESTAMP)
    clock.advance_time(advance_by=6)
    for watermark in (MIN_TIMESTAMP, Timestamp.of(10_000)):
        due, _has_realtime = state.get_timers(watermark=watermark, processing_time=clock.time())
        due.sort(key=lambda timer: (timer[1][0] == GC_TIMER) != gc_first)
        for window_id, (name, domain, at, tag) in due:  # as the runner delivers each: cleared, then fired
            state.clear_timer(window_id, name, domain, tag)
            panes += driver.process_timer(window_id, name, domain, at, state, watermark)
    return [_pane(p) for p in panes]


@pytest.mark.parametrize("gc_first", [True, False])
def test_a_window_ended_and_collected_at_once_still_gives_its_on_time_pane(gc_first) -> None:
    """A drain moves the watermark past a window's end and past its collection in one step, and
    the runner fires a key's due timers in the order they were set (a merge sets the window's
    end-of-window timer again, after the collection timer). Whichever fires first, the ON_TIME
    pane comes out, as from Beam's own driver and as Java's runners emit it when a window ends
    and closes at once (a drained run at 1,000 events/s once left four sessions as EARLY rows)."""
    plain = _early_then_drained(gc_first)
    with patched_direct_runner():
        fixed = _early_then_drained(gc_first)
    assert [p.timing for p in plain] == ["EARLY", "ON_TIME"]
    assert fixed == plain


def _cyclic_garbage_of_merging_sessions(name: str) -> int:
    """Runs 3,000 clicks of 300 users into merging session windows with the collector off and
    returns how many objects only the collector could free (reference cycles)."""
    import gc

    stream = test_stream.TestStream()
    for batch in range(30):
        stream.add_elements([beam.window.TimestampedValue((f"u{i % 300}", 1), batch * 2 + i / 100) for i in range(100)])
        stream.advance_watermark_to(batch * 2)
    stream.advance_watermark_to_infinity()
    pipeline, sessions = _accumulating_sessions(stream, gap=10, lateness=30)
    _ = sessions | "Count" >> beam.CombinePerKey(sum) | "Collect" >> beam.ParDo(_Collect(name))
    gc.collect()
    gc.disable()
    try:
        pipeline.run().wait_until_finish()
        return gc.collect()
    finally:
        gc.enable()


def test_merging_windows_leave_no_class_per_merge_for_the_collector(monkeypatch) -> None:
    """Fix 12: Beam's trigger driver defines a merge-context class in every call that merges
    windows (every click of a session); each class, with its functions and cells, is reference
    cycles that only the garbage collector frees, and the collector's pauses grew with them.
    With the class defined once, a merging run leaves a fraction of the cyclic garbage, and the
    same panes."""
    from beam_pipelines.local import direct_runner_fixes as fixes

    _OUTPUTS.clear()
    with patched_direct_runner(), monkeypatch.context() as beams_own:
        beams_own.setattr(fixes, "_process_elements", fixes._ORIGINAL_PROCESS_ELEMENTS)
        with_class_per_merge = _cyclic_garbage_of_merging_sessions("beam")
    with patched_direct_runner():
        with_one_class = _cyclic_garbage_of_merging_sessions("fixed")
    assert sorted(_OUTPUTS["fixed"]) == sorted(_OUTPUTS["beam"])
    assert with_one_class * 3 < with_class_per_merge, (with_one_class, with_class_per_merge)


def test_the_timer_index_orders_timers_set_in_seconds_beside_timestamps() -> None:
    """A stateful DoFn may set a timer in seconds (a float) and the trigger driver sets
    Timestamps: the index (fix 2) keeps both as one kind of number and finds them due in order."""
    from apache_beam.transforms import trigger
    from apache_beam.utils.timestamp import Timestamp

    from beam_pipelines.local import direct_runner_fixes as fixes

    states = fixes._IndexedKeyedStates()
    for key, at in ((b"a", 20.5), (b"b", Timestamp(10)), (b"c", Timestamp(30)), (b"d", 29.999999)):
        state = trigger.InMemoryUnmergedState()
        state.set_timer("window", "t", TimeDomain.WATERMARK, at)
        states[key] = state
        states.index(key)
    assert states.due(Timestamp(20)) == [b"b"]
    assert states.due(Timestamp(30)) == [b"a", b"d", b"c"]
