"""The file reader (every line exactly once, however the files are split into ranges), payload
packing, and CombineBatchesPerKey against a plain per-key fold."""

from __future__ import annotations

import gzip
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.common.combine import CombineBatchesPerKey
from beam_pipelines.common.io import ReadLineBatches, _ReadLines, _SplitFiles
from beam_pipelines.common.packing import pack, unpack
from beam_pipelines.runner import local_runner_tuning

lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=30)


def expected_lines(data: bytes) -> list[bytes]:
    """JSONL lines the independent way: split on LF, drop one CR before it, no empty tail."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    else:
        pieces[-1] += b"\n"  # the last line has no line break: mark it so it keeps any CR
    return [p[:-1] if p.endswith(b"\n") else p[:-1] if p.endswith(b"\r") else p for p in pieces]


def read_ranges(pattern: str, batch: int, range_bytes: int) -> list[list[bytes]]:
    """The reader's two steps called directly, range by range (the Beam test is below)."""
    return [
        b for file_range in _SplitFiles(range_bytes).process(pattern) for b in _ReadLines(batch).process(file_range)
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines, st.booleans(), st.booleans(), st.integers(1, 40), st.integers(1, 4))
def test_every_line_once_whatever_the_ranges(
    tmp_path: Path, content: list[bytes], crlf: bool, final_newline: bool, range_bytes: int, batch: int
) -> None:
    data = (b"\r\n" if crlf else b"\n").join(content) + (
        (b"\r\n" if crlf else b"\n") if final_newline and content else b""
    )
    path = tmp_path / "events.jsonl"
    path.write_bytes(data)
    batches = read_ranges(str(path), batch, range_bytes)
    assert all(0 < len(b) <= batch for b in batches)
    assert sorted(line for b in batches for line in b) == sorted(expected_lines(data))


def test_globs_and_compressed_files_through_beam(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"a1\na2\n" + b"x" * 100 + b"\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as fh:
        fh.write(b"b1\r\nb2")
    with local_runner_tuning(), beam.Pipeline(runner="FnApiRunner") as pipeline:
        batches = pipeline | ReadLineBatches(str(tmp_path / "*"), batch=2, range_bytes=5)
        assert_that(batches | beam.FlatMap(lambda b: b), equal_to([b"a1", b"a2", b"x" * 100, b"b1", b"b2"]))


@given(st.lists(st.binary(max_size=50), max_size=40))
def test_packing_round_trips_any_bytes(payloads: list[bytes]) -> None:
    assert unpack(pack(payloads)) == payloads


class _SumAndCount(beam.CombineFn):
    def create_accumulator(self) -> list[int]:
        return [0, 0]

    def add_input(self, accumulator: list[int], value: int) -> list[int]:
        accumulator[0] += value
        accumulator[1] += 1
        return accumulator

    def merge_accumulators(self, accumulators) -> list[int]:
        merged = [0, 0]
        for s, n in accumulators:
            merged[0] += s
            merged[1] += n
        return merged

    def extract_output(self, accumulator: list[int]) -> tuple[int, int]:
        return tuple(accumulator)


def _keyed(number: int):
    """Each number counts for its remainder by 7, and twice for 'even' when it is even."""
    yield number % 7, number
    if number % 2 == 0:
        yield "even", number
        yield "even", number


@pytest.mark.parametrize("max_keys", [1, 3, 100_000])
def test_combine_batches_per_key_equals_a_plain_fold(max_keys: int) -> None:
    batches = [list(range(start, start + size)) for start, size in ((0, 10), (10, 1), (11, 0), (11, 25), (36, 64))]
    expected: dict = defaultdict(lambda: [0, 0])
    for batch in batches:
        for number in batch:
            for key, value in _keyed(number):
                expected[key][0] += value
                expected[key][1] += 1
    with local_runner_tuning(), beam.Pipeline(runner="FnApiRunner") as pipeline:
        result = pipeline | beam.Create(batches) | CombineBatchesPerKey(_keyed, _SumAndCount(), max_keys=max_keys)
        assert_that(result, equal_to([(k, tuple(v)) for k, v in expected.items()]))
