"""Combine batches of events per key: the batch-mode form of ``beam.CombinePerKey``.

On a bounded input the parse step hands over events in batches (lists; see parse.py). Beam
would lift a CombinePerKey into a partial combine per bundle, but it still calls it once per
event, and on the local runner every element costs a few microseconds in each step it
passes. ``CombineBatchesPerKey`` adds the events of all the batches of a bundle into one
accumulator per key in plain Python, then lets ``CombinePerKey`` merge those accumulators
across bundles, with the job's own CombineFn doing all the combining.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["AggregateFn", "CombineBatchesPerKey"]

#: event -> the (key, value) pairs it contributes (none, one or several).
Keyed = Callable[[Any], Iterable[tuple[Any, Any]]]


class AggregateFn(beam.CombineFn):
    """The CombineFn of a mergeable aggregate (sessions/metrics.py, revenue/metrics.py).

    ``factory()`` makes an empty aggregate; ``aggregate.add(value)`` adds one input and
    ``aggregate.merge(other)`` folds in another partial aggregate, both returning the
    aggregate. The output is the aggregate itself: the job's row step turns it into rows.
    ``accumulator_coder``: an explicit coder (coders.py) where accumulators live in a
    streaming job's state; Beam's default otherwise.
    """

    def __init__(self, factory: Callable[[], Any], accumulator_coder: beam.coders.Coder | None = None):
        self.factory, self.accumulator_coder = factory, accumulator_coder

    def get_accumulator_coder(self) -> beam.coders.Coder:
        return self.accumulator_coder or super().get_accumulator_coder()

    def create_accumulator(self) -> Any:
        return self.factory()

    def add_input(self, accumulator: Any, value: Any) -> Any:
        return accumulator.add(value)

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        merged = self.factory()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: Any) -> Any:
        return accumulator


class _CombineInBundle(beam.DoFn):
    """Adds every event of the bundle's batches to one accumulator per key, and emits the
    accumulators when the bundle ends (or when more than ``max_keys`` are held)."""

    def __init__(self, keyed: Keyed, combine_fn: beam.CombineFn, counter: tuple[str, str] | None, max_keys: int):
        self.keyed, self.combine_fn, self.counter, self.max_keys = keyed, combine_fn, counter, max_keys

    def setup(self) -> None:
        self.combine_fn.setup()
        self.events = Metrics.counter(*self.counter) if self.counter else None

    def start_bundle(self) -> None:
        self.table: dict[Any, Any] = {}

    def process(self, batch, *side):  # (no hints: Beam would check the side input against them)
        if self.events is not None:
            self.events.inc(len(batch))
        create, add, table = self.combine_fn.create_accumulator, self.combine_fn.add_input, self.table
        for event in batch:
            for key, value in self.keyed(event, *side):
                accumulator = table.get(key)
                table[key] = add(create() if accumulator is None else accumulator, value)
        if len(table) > self.max_keys:
            yield from table.items()
            self.table = {}

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for item in self.table.items():
            yield GlobalWindows.windowed_value(item)  # bounded input: everything is in the global window
        self.table = {}


class _MergeAccumulators(beam.CombineFn):
    """A CombineFn whose inputs are accumulators of ``fn``: adding one is merging it."""

    def __init__(self, fn: beam.CombineFn):
        self.fn = fn

    def setup(self) -> None:
        self.fn.setup()

    def create_accumulator(self) -> Any:
        return self.fn.create_accumulator()

    def add_input(self, accumulator: Any, other: Any) -> Any:
        return self.fn.merge_accumulators([accumulator, other])

    def merge_accumulators(self, accumulators: Iterable[Any]) -> Any:
        return self.fn.merge_accumulators(accumulators)

    def extract_output(self, accumulator: Any) -> Any:
        return self.fn.extract_output(accumulator)


class CombineBatchesPerKey(beam.PTransform):
    """Batches of events (bounded input, global window) -> ``(key, combine_fn's output)`` for
    every key ``keyed`` gives.

    ``counter`` (namespace, name), if given, counts the events that come in. ``max_keys``
    bounds the accumulators held per bundle, as Beam's own partial combine does. With a
    ``side_input`` (e.g. ``beam.pvalue.AsDict``), ``keyed`` is called as ``keyed(event, side)``.
    """

    def __init__(
        self,
        keyed: Keyed,
        combine_fn: beam.CombineFn,
        *,
        counter: tuple[str, str] | None = None,
        max_keys: int = 100_000,
        side_input: Any = None,
    ):
        super().__init__()
        self.keyed, self.combine_fn, self.counter, self.max_keys = keyed, combine_fn, counter, max_keys
        self.side_inputs = () if side_input is None else (side_input,)

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return (
            batches
            | "Combine batches"
            >> beam.ParDo(_CombineInBundle(self.keyed, self.combine_fn, self.counter, self.max_keys), *self.side_inputs)
            | "Merge per key" >> beam.CombinePerKey(_MergeAccumulators(self.combine_fn))
        )
