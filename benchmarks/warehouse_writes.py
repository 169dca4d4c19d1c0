"""What a streaming write to the local DuckDB warehouse costs as the sessions table grows.

    python benchmarks/warehouse_writes.py [--sizes 100000,500000,1000000] [--batch 500] [--writes 20]

A live run's analytics job writes ``user_sessions`` every half second: a gathered batch of
EARLY panes of open sessions and final panes of closed ones, each upserted and checked against
the user's longer rows (a session merged into one that starts earlier is superseded). An hour
at 1,000 events/s leaves about a million rows. This script fills the table with synthetic
sessions (the real DDL, 20,000 users with a session every 72 s) to each size, then times
``--writes`` batches of ``--batch`` rows through the sink's own statement (half new sessions,
half later panes of sessions from the newer half of the table, as long sessions' final panes
reach back), and a snapshot (CHECKPOINT and copy) as the writer publishes it.
Prints a table: size, statement p50 / max, snapshot.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import print_table  # noqa: E402

from beam_pipelines.common.warehouse import _WriteDuckDB  # noqa: E402

USERS = 20_000
START = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def _session(n: int, rng: random.Random) -> dict:
    user = f"user-{n % USERS:05d}"
    start = START + timedelta(seconds=(n // USERS) * 72 + rng.uniform(0, 5))  # a user's sessions never overlap
    end = start + timedelta(seconds=rng.uniform(5, 60))
    return {
        "user_id": user,
        "session_id": f"{user}@{n}",
        "session_start": start,
        "session_end": end,
        "duration_seconds": (end - start).total_seconds(),
        "event_count": 5,
        "page_views": 2,
        "product_views": 2,
        "add_to_cart_count": 1,
        "remove_from_cart_count": 0,
        "checkout_count": 0,
        "purchase_count": 0,
        "total_revenue": Decimal("0.00"),
        "device_type": "mobile",
        "geo_region": "EU",
        "primary_category": "books",
        "converted": False,
        "cart_abandoned": True,
        "pane_timing": "EARLY",
        "pane_index": 0,
    }


def measure(path: str, sizes: list[int], batch: int, writes: int) -> list[tuple[str, str]]:
    sink = _WriteDuckDB(path, "session_aggregate", "user_sessions")
    sink.setup()
    writer, rng, rows = sink.writer, random.Random(7), []
    filled = 0
    for size in sizes:
        while filled < size:  # fill in statements of 50,000 rows (the sink's largest)
            chunk = [_session(n, rng) for n in range(filled, min(size, filled + 50_000))]
            writer.write("user_sessions", {(r["session_id"],): r for r in chunk}, sink._statement)
            rows.extend(chunk[::10])
            filled += len(chunk)
        took = []
        for w in range(writes):
            fresh = [_session(filled + w * batch + i, rng) for i in range(batch // 2)]
            later = [
                dict(r, pane_index=r["pane_index"] + 1) for r in rng.sample(rows[len(rows) // 2 :], batch - len(fresh))
            ]
            started = time.perf_counter()
            writer.write("user_sessions", {(r["session_id"],): r for r in fresh + later}, sink._statement)
            took.append(time.perf_counter() - started)
        filled += writes * (batch // 2)
        started = time.perf_counter()
        writer.snapshot()
        snapshot = time.perf_counter() - started
        yield (
            f"{filled:,} rows",
            f"write of {batch}: p50 {statistics.median(took) * 1e3:.0f} ms, max {max(took) * 1e3:.0f} ms; "
            f"snapshot {snapshot * 1e3:.0f} ms ({Path(path).stat().st_size / 1e6:.0f} MB)",
        )
    sink.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,500000,1000000")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--writes", type=int, default=20)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "warehouse.duckdb")
        print_table(list(measure(path, sizes, args.batch, args.writes)))


if __name__ == "__main__":
    main()
