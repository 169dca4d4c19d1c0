"""The batch tests share one local SparkSession (127.0.0.1) and one simulated night of traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

from tests.support.batch import DAYS
from tests.support.cli import simulate_to
from tests.support.daily_reference import clean_lines, compute, create_inputs


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from batch.spark import local_session

    session = local_session(app="streamforge-tests", cores="2")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def night_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six simulated hours across midnight, 2026-11-01 21:00 to 2026-11-02 03:00 UTC, with 1%
    malformed messages (every kind the simulator makes) and 1% duplicates."""
    return simulate_to(
        tmp_path_factory.mktemp("night"),
        "--start",
        "2026-11-01T21:00:00Z",
        "--duration",
        "6h",
        "--sessions-per-second",
        "0.5",
        "--malformed",
        "0.01",
        "--duplicates",
        "0.01",
    )


@pytest.fixture(scope="session")
def reference(night_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The metrics by DuckDB SQL over the lines the Python validator accepts (first of each event_id),
    and the validator's counts: computed without any of the batch's code."""
    clean = tmp_path_factory.mktemp("clean")
    counts = {
        "orders": clean_lines(night_run / "orders.jsonl", "order_event", clean / "orders.jsonl"),
        "clickstream": clean_lines(night_run / "clickstream.jsonl", "clickstream_event", clean / "clicks.jsonl"),
    }
    with duckdb.connect() as con:
        create_inputs(con, orders=clean / "orders.jsonl", clicks=clean / "clicks.jsonl")
        tables = compute(con, DAYS[0], DAYS[1])
    return {"counts": counts, "tables": tables}
