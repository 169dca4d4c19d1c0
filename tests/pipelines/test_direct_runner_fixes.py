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
from apache_beam.transforms.trigger import AccumulationMode, AfterCount, AfterWatermark
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
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(runner="DirectRunner", options=options)
    (
        pipeline
        | stream
        | "Sessions"
        >> beam.WindowInto(
            window.Sessions(30),
            trigger=AfterWatermark(late=AfterCount(1)),
            accumulation_mode=AccumulationMode.ACCUMULATING,
            allowed_lateness=300,
        )
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
