"""PostgreSQL -> the real Debezium connector (`streamforge cdc run`) -> JSONL -> `streamforge run cdc` -> DuckDB.

One story, as an operator would live it: the shop database has data before capture starts
(snapshot); the workload keeps writing while the connector is killed with SIGKILL and
restarted (at-least-once: some changes come twice); a column is added; a clean SIGTERM stop
and restart redelivers nothing; malformed messages sit among the real ones. The job's
warehouse is then checked against PostgreSQL by query, and its counts against the files.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import orjson
import psycopg
import pytest

from streamforge.cdc.lifecycle import ORDER_TRANSITIONS
from tests.support.capture import PERSONAL, source_rows, start_capture, stop_capture, summary_row
from tests.support.cli import run_entry_point

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPLICAS = ("products", "orders", "order_items", "customers")


def _lines(out: Path, table: str) -> list[bytes]:
    path = out / "changes" / f"cdc.public.{table}.jsonl"
    return path.read_bytes().splitlines() if path.exists() else []


def _wait_for(condition: Any, what: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"cdc run exited {process.returncode} while waiting for {what}:\n{process.stderr.read()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _mark(url: str, out: Path, process: subprocess.Popen, marker: str) -> None:
    """Commit a marker change and wait until it is captured: everything committed before is too."""
    with psycopg.connect(url) as con:
        con.execute("UPDATE customers SET city = %s WHERE id = 1", (marker,))  # city: not a hashed column
    _wait_for(lambda: any(marker.encode() in line for line in _lines(out, "customers")[-50:]), marker, process)


def _identities(out: Path) -> Counter[tuple[str, str, int]]:
    """(table, key, lsn) of every change event in the files, with how many times it was written."""
    seen: Counter[tuple[str, str, int]] = Counter()
    for path in (out / "changes").glob("cdc.public.*.jsonl"):
        for line in path.read_bytes().splitlines():
            event = orjson.loads(line)
            if event is None:
                continue
            image = event["before"] if event["op"] == "d" else event["after"]
            seen[(event["source"]["table"], str(image["id"]), event["source"]["lsn"])] += 1
    return seen


def test_database_changes_reach_the_warehouse_exactly_once_across_a_crash(shop_db: str, tmp_path: Path) -> None:
    url = shop_db
    run_entry_point("cdc", "workload", "--database", url, "--operations", "150", "--rate", "0", "--seed", "1")
    capture = start_capture(url, f"file://{tmp_path / 'changes'}", tmp_path / "offsets.dat")
    stats: dict[str, int] = {}
    try:
        # the snapshot: every product and customer written before capture started
        _wait_for(
            lambda: len(_lines(tmp_path, "products")) >= 700 and len(_lines(tmp_path, "customers")) >= 2000,
            "the snapshot",
            capture,
        )
        _mark(url, tmp_path, capture, "marker-streaming")

        # a crash in the middle of a stream of changes
        workload = threading.Thread(target=lambda: stats.update(_workload(url, 600, seed=2)))
        workload.start()
        _wait_for(lambda: len(_lines(tmp_path, "orders")) >= 120, "changes while the workload runs", capture)
        capture.kill()  # SIGKILL: no offsets flushed since the last periodic flush
        capture.wait()
        _wait_until_slot_released(url)
        capture = start_capture(url, f"file://{tmp_path / 'changes'}", tmp_path / "offsets.dat")
        workload.join()
        _mark(url, tmp_path, capture, "marker-after-crash")

        # a column added upstream, then used
        with psycopg.connect(url) as con:
            con.execute("ALTER TABLE products ADD COLUMN weight_kg double precision")
            con.execute("UPDATE products SET weight_kg = id / 10.0 WHERE id <= 25")
        _mark(url, tmp_path, capture, "marker-after-alter")
        assert stop_capture(capture, signal.SIGTERM) == 0

        # a clean stop: the restart resumes exactly where it stopped
        before_restart = _identities(tmp_path)
        capture = start_capture(url, f"file://{tmp_path / 'changes'}", tmp_path / "offsets.dat")
        stats_after = _workload(url, 100, seed=3)
        _mark(url, tmp_path, capture, "marker-final")
        assert stop_capture(capture, signal.SIGINT) == 0
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    captured = _identities(tmp_path)
    after_restart = captured - before_restart
    assert after_restart and not set(after_restart) & set(before_restart), "a clean restart redelivered changes"
    print(
        f"change events written more than once (redelivered after the SIGKILL): {sum(n - 1 for n in captured.values())}"
    )

    # malformed messages among the real ones
    products = tmp_path / "changes" / "cdc.public.products.jsonl"
    good = orjson.loads(_lines(tmp_path, "products")[-1])
    bad = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({**good, "op": "x"}),
        orjson.dumps({**good, "source": {**good["source"], "table": "suppliers"}}),
        orjson.dumps({**good, "after": {**good["after"], "price": "twelve"}}),
    ]
    with products.open("ab") as f:
        f.write(b"\n".join(bad) + b"\n")

    warehouse = tmp_path / "warehouse.duckdb"
    job = run_entry_point(
        "run",
        "cdc",
        "--input",
        f"file://{tmp_path / 'changes'}",
        "--warehouse",
        f"duckdb://{warehouse}",
        env={"COLUMNS": "200"},
    )
    files = {p.name: p.read_bytes().splitlines() for p in (tmp_path / "changes").glob("cdc.public.*.jsonl")}
    lines = sum(len(v) for v in files.values())
    tombstones = sum(line == b"null" for v in files.values() for line in v)
    read, changes, redelivered, job_tombstones, heartbeats, dead_lettered, applied, stale = summary_row(job.stdout)

    with duckdb.connect(str(warehouse), read_only=True) as wh, psycopg.connect(url) as pg:
        # counts add up: every line is a change, a tombstone or a dead letter
        dead = wh.execute("SELECT reason, count(*) FROM dead_letter GROUP BY reason ORDER BY reason").fetchall()
        assert dead == [("invalid_envelope", 2), ("invalid_json", 1), ("invalid_value", 1), ("unknown_table", 1)]
        assert (read, job_tombstones, dead_lettered, heartbeats) == (lines, tombstones, 5, 0)
        assert read == changes + job_tombstones + heartbeats + dead_lettered
        assert changes == sum(captured.values())
        # every redelivery after the crash is dropped before anything is written
        assert redelivered == sum(captured.values()) - len(captured)
        assert applied + stale <= changes - redelivered
        distinct = Counter(table for table, _key, _lsn in captured)
        # nothing applied twice, nothing lost: one changelog row per distinct change
        for table in ("products", "customers", "orders", "order_items", "inventory_movements"):
            rows = wh.execute(f"SELECT count(*), count(DISTINCT (primary_key, lsn)) FROM {table}_changelog").fetchone()
            assert rows[0] == rows[1] == distinct[table], table
        # inventory movements are only ever inserted: one insert per source row
        assert (
            wh.execute("SELECT count(*) FROM inventory_movements_changelog WHERE op IN ('c', 'r')").fetchone()[0]
            == pg.execute("SELECT count(*) FROM inventory_movements").fetchone()[0]
        )

        # the replicas equal the source tables, column by column (weight_kg included), the personal
        # columns as PostgreSQL hashes them with the run's salt: never in the clear downstream
        for table in REPLICAS:
            names, source = source_rows(pg, table, tmp_path / "offsets.dat")
            replica = wh.execute(
                f"SELECT {', '.join(names)} FROM {table}_current WHERE NOT _deleted ORDER BY id"
            ).fetchall()
            assert replica == source, table
        changes = (tmp_path / "changes" / "cdc.public.customers.jsonl").read_text()
        for column in PERSONAL:  # not one value in the clear in the replica or the change events
            clear = {v for (v,) in pg.execute(f"SELECT {column} FROM customers").fetchall()}
            assert not clear & {v for (v,) in wh.execute(f"SELECT {column} FROM customers_current").fetchall()}
            assert not [v for v in clear if f'"{v}"' in changes], column
        assert wh.execute("SELECT count(*) FROM products_current WHERE weight_kg IS NOT NULL").fetchone()[0] == 25
        assert (
            wh.execute("SELECT count(*) FROM orders_current WHERE _deleted").fetchone()[0]
            == wh.execute("SELECT count(DISTINCT primary_key) FROM orders_changelog WHERE op = 'd'").fetchone()[0]
            > 0
        )

        # business events: every order placed and every status change the workload made while
        # capturing (by its own count), each once, and all allowed by the lifecycle
        placed, moved, invalid = wh.execute(
            "SELECT count(*) FILTER (WHERE from_status IS NULL), count(*) FILTER (WHERE from_status IS NOT NULL), "
            "count(*) FILTER (WHERE NOT is_valid) FROM order_status_transitions"
        ).fetchone()
        made = Counter(stats) + Counter(stats_after)
        assert (placed, moved, invalid) == (made["new_order"], made["advance_order"], 0)
        allowed = {(a, b) for a, nexts in ORDER_TRANSITIONS.items() for b, _ in nexts}
        pairs = set(
            wh.execute(
                "SELECT DISTINCT from_status, to_status FROM order_status_transitions WHERE from_status IS NOT NULL"
            ).fetchall()
        )
        assert pairs <= allowed
        price_moves = wh.execute("SELECT count(*) FROM price_changes WHERE old_price <> new_price").fetchone()[0]
        assert (
            price_moves
            == wh.execute(
                "SELECT count(*) FROM products_changelog WHERE op = 'u' AND "
                "json_extract_string(before, '$.price') <> json_extract_string(after, '$.price')"
            ).fetchone()[0]
            > 0
        )


def _wait_until_slot_released(url: str, timeout: float = 30) -> None:
    """After a crash the server notices the dead connection shortly; until then the slot is busy."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as con:
        while con.execute("SELECT bool_or(active) FROM pg_replication_slots").fetchone()[0]:
            assert time.monotonic() < deadline, "the replication slot stayed active after the crash"
            time.sleep(0.1)


def _workload(url: str, operations: int, seed: int) -> dict[str, int]:
    from streamforge.cdc.workload import Workload

    with psycopg.connect(url) as con:
        return dict(Workload(con, seed).run(rate=None, operations=operations, duration_s=None).operations)
