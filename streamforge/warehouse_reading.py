"""Reading a warehouse, whichever it is: a DuckDB file (its snapshot while a run writes it) or a
BigQuery dataset (its current rows, copied into DuckDB), so that ``streamforge report`` and the
dashboard run one SQL over either. A location is a path, ``duckdb://PATH`` or
``bigquery://PROJECT.DATASET``.

Reading BigQuery costs a query per table, so a reader that polls (the dashboard) reuses what it
read for ``every_s`` seconds, and says how old it is, as a DuckDB snapshot does.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterable

from streamforge.bigquery_warehouse import BigQueryWarehouse, read_warehouse
from streamforge.warehouse import Reading, open_for_reading

__all__ = ["WarehouseLocation", "open_warehouse"]

_cache: dict[tuple[str, tuple[str, ...] | None], tuple[float, Any]] = {}
_cache_lock = threading.Lock()


class WarehouseLocation:
    """A warehouse named on a command line: a DuckDB file or a BigQuery dataset."""

    def __init__(self, text: str | Path):
        text = str(text)
        self.text = text
        self.bigquery = BigQueryWarehouse.parse(text) if text.startswith("bigquery://") else None
        self.path = None if self.bigquery else Path(text.removeprefix("duckdb://"))

    def __str__(self) -> str:
        return self.text

    def exists(self) -> bool:
        """A DuckDB file exists once a run wrote it; a BigQuery dataset is taken to exist (a
        missing one is an error on reading)."""
        return self.bigquery is not None or self.path.exists()


def open_warehouse(
    location: WarehouseLocation, tables: Iterable[str] | None = None, *, every_s: float = 0.0
) -> Reading:
    """A read-only DuckDB connection over the warehouse's current rows (``tables`` of them, or
    all). BigQuery is read again once what was read is ``every_s`` old."""
    if location.bigquery is None:
        return open_for_reading(location.path)
    key = (location.bigquery.url, None if tables is None else tuple(sorted(tables)))
    with _cache_lock:
        now = time.monotonic()
        cached = _cache.get(key)
        if cached is None or now - cached[0] >= every_s:
            if cached is not None:
                cached[1].close()
            cached = _cache[key] = (now, read_warehouse(location.bigquery, tables).connection)
        return Reading(cached[1].cursor(), snapshot=True, age_s=now - cached[0])
