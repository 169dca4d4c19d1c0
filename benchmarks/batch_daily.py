"""The daily batch at scale: local Spark on one day of events.

    python benchmarks/batch_daily.py [--orders 2000000] [--clicks 5000000] [--runs 2]

Generates one day of valid events with DuckDB SQL (orders: a CREATED event and a second
lifecycle event per order, 1-3 lines each, amounts that add up; clicks: ten-event sessions
from product view to purchase; categories and regions from streamforge/vocabulary.py) as
Parquet with the tables' columns, the layout `streamforge run --raw-events` keeps. Then runs
``batch/daily_metrics.py --input parquet://DIR --output file://OUT`` on local[*] (2 cores
here), each run in a fresh process, timed from the moment its SparkSession exists to the end
of the job and as a whole process (with the JVM start), with its peak memory (the whole
process tree's RSS, polled every 50 ms). Its JVM starts as every local run's does
(batch/local_jvm.py), from the installation's class-data archive, which is recorded first if
`make` has not yet.

Target (issue 6): the Spark job <= 30 s after session start on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure import print_table  # noqa: E402

from streamforge.vocabulary import CATEGORIES, REGION_CODES  # noqa: E402

DAY = "2026-11-01"
REGIONS = sorted(REGION_CODES)

GENERATE = """
SET TimeZone = 'UTC';
CREATE TABLE order_events AS
WITH orders AS (
    SELECT o, 'O' || o AS order_id, 'U' || (hash(o) % 300000) AS user_id, 'S' || o AS session_id,
           1 + hash(o * 7) % 3 AS lines, hash(o * 13) % 10 AS fate,
           TIMESTAMPTZ '{day} 00:00:00+00' + to_milliseconds(CAST((o * 86000000.0) / {orders} AS BIGINT)) AS created_at
    FROM range({orders}) t(o)),
items AS (
    SELECT o, list({{'product_id': 'P' || ((o * 31 + l) % 5000), 'category': {categories}[1 + (o + l) % {n_categories}],
                    'quantity': CAST(1 + (o + l) % 3 AS INTEGER),
                    'unit_price': CAST(5 + ((o * 17 + l * 29) % 50000) / 100.0 AS DECIMAL(15,2))}}) AS items
    FROM orders, range(3) r(l) WHERE l < lines GROUP BY o),
priced AS (
    SELECT orders.*, items.items,
           CAST(list_sum([i.unit_price * i.quantity FOR i IN items.items]) AS DECIMAL(15,2)) AS subtotal
    FROM orders JOIN items USING (o)),
shaped AS (
    SELECT *, CASE WHEN o % 4 = 0 THEN CAST(ROUND(subtotal * 0.05, 2) AS DECIMAL(15,2)) ELSE 0.00 END AS discount,
           CAST(4.99 AS DECIMAL(15,2)) AS shipping, {regions}[1 + o % {n_regions}] AS shipping_region,
           ['card', 'paypal', 'apple_pay', 'google_pay', 'gift_card'][1 + o % 5] AS payment_method
    FROM priced),
lifecycle AS (
    SELECT *, 0 AS step, 'CREATED' AS status, created_at AS event_time FROM shaped
    UNION ALL
    SELECT *, 1, CASE WHEN fate < 8 THEN 'PAID' WHEN fate = 8 THEN 'PAYMENT_FAILED' ELSE 'CANCELLED' END,
           created_at + INTERVAL 90 SECOND FROM shaped)
SELECT 'e-' || o || '-' || step AS event_id, order_id, user_id, session_id, status, items, subtotal, discount, shipping,
       CAST(subtotal - discount + shipping AS DECIMAL(15,2)) AS total_amount, 'USD' AS currency, payment_method,
       CASE WHEN payment_method = 'card' THEN 'fp_' || (o % 100000) END AS card_fingerprint, shipping_region,
       'US' AS ip_country, LEAST(event_time, TIMESTAMPTZ '{day} 23:59:59.999+00') AS event_time,
       o % 3 = 0 AS is_first_order
FROM lifecycle;
CREATE TABLE clickstream_events AS
WITH c AS (SELECT c, c // 10 AS s, c % 10 AS k FROM range({clicks}) t(c))
SELECT 'c-' || c AS event_id, 'U' || (hash(s) % 300000) AS user_id, 'S' || s AS session_id,
       ['page_view', 'page_view', 'product_view', 'product_view', 'product_view', 'add_to_cart', 'page_view',
        'checkout_start', 'product_view', 'purchase'][1 + k] AS event_type,
       CASE WHEN k NOT IN (0, 1, 6) THEN 'P' || (s % 5000) END AS product_id,
       CASE WHEN k NOT IN (0, 1, 6) THEN {categories}[1 + s % {n_categories}] END AS category,
       CASE WHEN k NOT IN (0, 1, 6) THEN CAST(5 + (s % 50000) / 100.0 AS DECIMAL(15,2)) END AS price,
       CASE WHEN k IN (5, 7, 9) THEN CAST(1 + s % 3 AS INTEGER) END AS quantity,
       TIMESTAMPTZ '{day} 00:00:00+00' + to_milliseconds(CAST((c * 86000000.0) / {clicks} AS BIGINT)) AS event_time,
       ['desktop', 'mobile', 'tablet'][1 + s % 3] AS device_type, {regions}[1 + s % {n_regions}] AS geo_region,
       'https://shop.example.com/p/' || (s % 5000) AS page_url, NULL::VARCHAR AS referrer, 'bench' AS user_agent,
       CASE WHEN k = 9 THEN 'O' || s END AS order_id
FROM c;
COPY order_events TO '{out}/order_events/part-0.parquet' (FORMAT parquet);
COPY clickstream_events TO '{out}/clickstream_events/part-0.parquet' (FORMAT parquet);
"""

SPARK_JOB = """
import json, sys, time
from datetime import date
from batch.spark import local_session
from batch.daily_metrics import run
spark = local_session()
started = time.perf_counter()
report = run(spark, [date.fromisoformat(sys.argv[1])], sys.argv[2], sys.argv[3])
print(json.dumps({"job_seconds": time.perf_counter() - started, "counts": report.counts, "timings": report.timings}))
"""


def generate(directory: Path, orders: int, clicks: int) -> None:
    import duckdb

    for table in ("order_events", "clickstream_events"):
        (directory / table).mkdir(parents=True, exist_ok=True)
    sql = GENERATE.format(
        day=DAY,
        orders=orders // 2,
        clicks=clicks,
        out=directory,
        categories=str(list(CATEGORIES)),
        regions=str(REGIONS),
        n_categories=len(CATEGORIES),
        n_regions=len(REGIONS),
    )
    with duckdb.connect() as con:
        for statement in sql.split(";\n"):
            if statement.strip():
                con.execute(statement)


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def measured(command: list[str]) -> tuple[dict, float, int]:
    """(the JSON the process printed last, wall seconds, peak tree RSS in bytes)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    peak = [0]

    def poll() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss(process.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = process.communicate()
    wall = time.perf_counter() - started
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({process.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), wall, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--clicks", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-batch-bench-") as tmp:
        data = Path(tmp) / "events"
        started = time.perf_counter()
        generate(data, args.orders, args.clicks)
        print(
            f"generated {args.orders:,} orders and {args.clicks:,} clicks in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        from batch.local_jvm import record_archive

        archive, seconds = record_archive()  # what `make` records once per installation
        if seconds:
            print(f"recorded the JVM class-data archive {archive} in {seconds:.0f} s", file=sys.stderr)
        spark_runs = []
        for n in range(args.runs):
            out = Path(tmp) / f"out-{n}"
            spark_runs.append(measured([sys.executable, "-c", SPARK_JOB, DAY, f"parquet://{data}", f"file://{out}"]))
        counts = spark_runs[0][0]["counts"]
        for stream, expected in (("orders", args.orders), ("clickstream", args.clicks)):
            if counts[stream]["valid"] != expected:
                raise SystemExit(f"Spark kept {counts[stream]['valid']:,} of {expected:,} {stream} events")

    def span(values: list[float], fmt: str) -> str:
        return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    rows = [
        ("Spark job after session start, median (range)", span([r[0]["job_seconds"] for r in spark_runs], "{:.1f} s")),
        ("Spark whole process (JVM start included)", span([r[1] for r in spark_runs], "{:.1f} s")),
        ("Spark peak memory (driver process tree)", span([r[2] / 2**20 for r in spark_runs], "{:,.0f} MiB")),
    ]
    for step, seconds in spark_runs[-1][0]["timings"].items():
        rows.append((f"  Spark, last run: {step}", f"{seconds:.1f} s"))
    print(f"\n{args.orders:,} orders + {args.clicks:,} clickstream events, one day, {args.runs} runs")
    print_table(rows)


if __name__ == "__main__":
    main()
