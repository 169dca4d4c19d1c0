"""Helpers for the daily batch tests: the night run's days and comparing the batch's tables with
the reference's rows."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb

#: The two UTC days the night run covers.
DAYS = ("2026-11-01", "2026-11-02")


def rows_of(output: Path, table: str) -> list[tuple]:
    """A table's rows as the batch wrote them to ``output/batch.duckdb``, sorted."""
    with duckdb.connect(str(output / "batch.duckdb"), read_only=True) as con:
        rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
    return sorted(rows, key=lambda row: tuple((value is None, "" if value is None else value) for value in row))


def assert_same_rows(actual: list[tuple], expected: list[tuple], what: str) -> None:
    """Equal row by row; decimals and integers exactly, ratios (floats) to 1e-6."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows, expected {len(expected)}"
    for got, want in zip(actual, expected):
        assert len(got) == len(want), f"{what}: {got} vs {want}"
        for a, b in zip(got, want):
            if isinstance(a, float) or isinstance(b, float):
                assert a is not None and b is not None and math.isclose(a, b, abs_tol=2e-6), f"{what}: {got} != {want}"
            else:
                assert a == b, f"{what}: {got} != {want}"
