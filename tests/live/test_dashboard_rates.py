"""The dashboard's rates (events/s in and processed) as two readers see them: the same numbers
for every reader between two progress samples (two browser tabs, or a tab and a script)."""

from __future__ import annotations

import json
from pathlib import Path

from streamforge.dashboard.app import DashboardSources, summary
from streamforge.warehouse_reading import WarehouseLocation


def _progress(folder: Path, at: float, pulled: int, acked: int) -> None:
    inputs = {"clickstream": {"pulled": pulled, "acked": acked, "duplicates": 0, "watermark_ms": None}}
    (folder / "analytics.progress.json").write_text(json.dumps({"at": at, "inputs": inputs}))


def test_two_readers_between_samples_see_the_same_rates(tmp_path: Path) -> None:
    sources = DashboardSources(WarehouseLocation(str(tmp_path / "none.duckdb")), progress_dir=tmp_path)
    _progress(tmp_path, 1_000.0, 0, 0)
    assert summary(sources)["health"]["analytics"]["in_per_s"] == 0.0  # one sample: no rate yet
    _progress(tmp_path, 1_002.0, 2_000, 1_800)
    readers = [summary(sources)["health"]["analytics"] for _ in range(3)]
    assert [(r["in_per_s"], r["processed_per_s"]) for r in readers] == [(1_000.0, 900.0)] * 3
    _progress(tmp_path, 1_003.0, 2_500, 2_400)  # 1 s later: still measured over at least 1.5 s
    readers = [summary(sources)["health"]["analytics"] for _ in range(2)]
    assert [(r["in_per_s"], r["processed_per_s"]) for r in readers] == [(2_500 / 3, 800.0)] * 2
    assert readers[0]["processed"] == 2_400
