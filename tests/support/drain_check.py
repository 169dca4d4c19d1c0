"""What a drained `streamforge up` wrote, against SQL over what was published.

    python -m tests.support.drain_check RUN [--gap 30m]

RUN is the folder `benchmarks/live_latency.py --keep RUN` leaves (``RUN/live`` is up's
workdir, ``RUN/injected.jsonl`` the orders it published beside the simulator), or up's own
workdir. The queries (tests/support/reference.py) restate the jobs' definitions in SQL over
the published record; nothing of the code under test computes the expected rows.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable

import duckdb

from streamforge.live.system import sink_records
from streamforge.timeutil import parse_duration
from tests.support.reference import load, revenue_per_minute, session_windows

__all__ = ["SESSION_COLUMNS", "drained_differences"]

SESSION_COLUMNS = "user_id, session_start, session_end, event_count, page_views, purchase_count, total_revenue"
MINUTE_COLUMNS = "window_start, gmv, order_count, units, unique_users, cancelled_gmv"


def drained_differences(
    workdir: Path, extra_orders: Iterable[Path] = (), gap_ms: int = 30 * 60_000
) -> tuple[dict, list]:
    """(counts, differences) of up's warehouse after a drain: user_sessions and
    revenue_per_minute against SQL over ``workdir/published`` plus ``extra_orders`` (JSON
    lines), fraud_alerts against the alerts the webhook sink received (each once), and no
    EARLY row left. ``differences`` is empty when everything agrees."""
    differences: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sf-drain-check-") as tmp:
        reference_dir = Path(tmp) / "published"
        shutil.copytree(workdir / "published", reference_dir)
        with open(reference_dir / "orders.jsonl", "ab") as orders:
            for extra in extra_orders:
                orders.write(extra.read_bytes())
        reference = load(reference_dir, skip_malformed=True)
    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        expected = reference.execute(
            f"SELECT {SESSION_COLUMNS} FROM ({session_windows(reference, gap_ms).sql_query()}) ORDER BY ALL"
        ).fetchall()
        actual = con.execute(f"SELECT {SESSION_COLUMNS} FROM user_sessions ORDER BY ALL").fetchall()
        if actual != expected:
            differences.append(
                f"user_sessions: {len(set(actual) - set(expected))} rows SQL does not have, "
                f"{len(set(expected) - set(actual))} SQL rows missing"
            )
        minutes = con.execute(f"SELECT {MINUTE_COLUMNS} FROM revenue_per_minute ORDER BY 1").fetchall()
        expected_minutes = reference.execute(
            f"SELECT {MINUTE_COLUMNS} FROM ({revenue_per_minute(reference).sql_query()}) ORDER BY 1"
        ).fetchall()
        if minutes != expected_minutes:
            differences.append(f"revenue_per_minute: {len(set(minutes) ^ set(expected_minutes))} rows differ")
        (early,) = con.execute("SELECT count(*) FROM user_sessions WHERE pane_timing = 'EARLY'").fetchone()
        if early:
            differences.append(f"user_sessions: {early} EARLY rows left after the drain")
        records = [r for r in sink_records(workdir / "logs" / "webhook-sink.log") if r.get("verdict") == "alert"]
        received = [r["body"]["alert_id"] for r in records]
        if len(received) != len(set(received)):
            differences.append(f"webhook: {len(received) - len(set(received))} alerts delivered twice")
        stored = {a for (a,) in con.execute("SELECT alert_id FROM fraud_alerts").fetchall()}
        if stored != set(received):
            differences.append(f"fraud_alerts: {len(stored ^ set(received))} differ from the alerts delivered")
        (published,) = reference.execute(
            "SELECT (SELECT count(*) FROM clicks) + (SELECT count(*) FROM orders)"
        ).fetchone()
        counts = {
            "events published (valid, distinct)": published,
            "sessions": len(actual),
            "revenue minutes": len(minutes),
            "alerts delivered": len(received),
        }
    finally:
        con.close()
        reference.close()
    return counts, differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--gap", default="30m", help="the run's session gap")
    args = parser.parse_args(argv)
    workdir = args.run / "live" if (args.run / "live").is_dir() else args.run
    injected = [args.run / "injected.jsonl"] if (args.run / "injected.jsonl").exists() else []
    counts, differences = drained_differences(workdir, injected, int(parse_duration(args.gap).total_seconds() * 1000))
    for name, value in counts.items():
        print(f"  {name:<36} {value:>12,}")
    print("\n".join(differences) if differences else "  every table equals SQL over the published record")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
