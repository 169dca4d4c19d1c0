"""The connector with the settings Debezium Server runs in production, not only the local ones:
offsets in the source database (the properties' JDBC store), the heartbeat action query, and the
publication the tables' owner made (`cdc setup`; auto-creation disabled), connecting as the
prepared user, who is no superuser. It is stopped and restarted: no change is lost or doubled;
and while the captured tables are quiet and WAL is written elsewhere, the heartbeats move the
replication slot on, so PostgreSQL can recycle that WAL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import psycopg
import pytest

from streamforge.cdc.config import DebeziumServerConfig
from tests.support.capture import ROLE_PASSWORD, as_user, new_role, start_capture, stop_capture
from tests.support.cli import run_cli, run_entry_point

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SALT = "c0ffee" * 4


def _events(out: Path) -> list[dict]:
    found = []
    for path in sorted(out.glob("cdc.public.*.jsonl")):
        found += [e for e in map(orjson.loads, path.read_bytes().splitlines()) if e is not None]
    return found


def _captured(out: Path, marker: str, capture: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until the change that wrote ``marker`` is captured: everything committed before is too."""
    deadline = time.monotonic() + timeout
    path = out / "cdc.public.customers.jsonl"
    while not (path.exists() and marker.encode() in path.read_bytes()):
        assert capture.poll() is None, capture.stderr.read()
        assert time.monotonic() < deadline, f"{marker} not captured"
        time.sleep(0.2)


def _mark(url: str, out: Path, capture: subprocess.Popen, marker: str) -> None:
    with psycopg.connect(url) as con:
        con.execute("UPDATE customers SET city = %s WHERE id = 1", (marker,))
    _captured(out, marker, capture)


def _workload(url: str, operations: int, seed: int) -> None:
    run_entry_point(
        "cdc", "workload", "-d", url, "--operations", str(operations), "--rate", "0", "--seed", str(seed), "-q"
    )


def test_the_production_properties_resume_exactly_and_keep_the_slot_moving(shop_db: str, tmp_path: Path) -> None:
    debezium = DebeziumServerConfig.load()
    user = new_role(shop_db)
    assert run_cli("cdc", "setup", "-d", shop_db, "--user", user, "--schema").exit_code == 0  # as the owner
    _workload(shop_db, 50, seed=1)
    out, connector = tmp_path / "changes", as_user(shop_db, user, ROLE_PASSWORD)

    def capture() -> subprocess.Popen:
        return start_capture(connector, f"file://{out}", "database", owner=False, CDC_PII_SALT=SALT)

    running = capture()
    try:
        _mark(shop_db, out, running, "after-snapshot")
        _workload(shop_db, 200, seed=2)
        _mark(shop_db, out, running, "after-workload")
        assert stop_capture(running, signal.SIGTERM) == 0
        with psycopg.connect(shop_db) as con:  # the offsets are where Debezium Server keeps them
            (stored,) = con.execute(f"SELECT count(*) FROM {debezium.offset_table}").fetchone()
        assert stored >= 1
        first_run = Counter((e["source"]["table"], e["source"]["lsn"], e["op"]) for e in _events(out))

        _workload(shop_db, 150, seed=3)  # while the connector is down
        running = capture()
        _mark(shop_db, out, running, "after-restart")

        # quiet captured tables, WAL written in another database: the heartbeats move the slot on
        with psycopg.connect(shop_db.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS wal_elsewhere")
            admin.execute("CREATE DATABASE wal_elsewhere")
        elsewhere = shop_db.rsplit("/", 1)[0] + "/wal_elsewhere"
        with psycopg.connect(elsewhere, autocommit=True) as other:
            other.execute("CREATE TABLE churn AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g")
            (written,) = other.execute("SELECT pg_current_wal_lsn()").fetchone()
        with psycopg.connect(shop_db) as con:
            (beat_before,) = con.execute(f"SELECT beat_at FROM {debezium.heartbeat_table} WHERE id = 1").fetchone()
        deadline, confirmed = time.monotonic() + 45, None
        while time.monotonic() < deadline:
            with psycopg.connect(shop_db) as con:
                (confirmed,) = con.execute(
                    "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                    (written, debezium.slot_name),
                ).fetchone()
            if confirmed:
                break
            time.sleep(1)
        with psycopg.connect(shop_db) as con:
            (beat_after,) = con.execute(f"SELECT beat_at FROM {debezium.heartbeat_table} WHERE id = 1").fetchone()
        assert confirmed, f"the slot's confirmed LSN stayed behind {written} for 45 s"
        assert beat_after > beat_before  # the action query ran, as the connector's user
        assert stop_capture(running, signal.SIGTERM) == 0
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
        with psycopg.connect(shop_db.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS wal_elsewhere")

    events = _events(out)
    identities = Counter(
        (e["source"]["table"], e["source"]["lsn"], e["op"], str((e["after"] or e["before"])["id"])) for e in events
    )
    assert max(identities.values()) == 1, "a change was delivered twice across the clean restart"
    second_run = Counter((e["source"]["table"], e["source"]["lsn"], e["op"]) for e in events) - first_run
    assert second_run, "nothing captured after the restart"
    # nothing lost: replaying the captured changes gives every table's rows as PostgreSQL has them
    # (numeric columns arrive as decimal strings: decimal.handling.mode=string)
    with psycopg.connect(shop_db) as con:
        for table, columns in (
            ("orders", ("id", "order_status")),
            ("products", ("id", "price")),
            ("order_items", ("id", "quantity")),
        ):
            source = sorted(
                tuple(str(v) for v in row) for row in con.execute(f"SELECT {', '.join(columns)} FROM {table}")
            )
            latest: dict[int, dict | None] = {}
            for event in sorted((e for e in events if e["source"]["table"] == table), key=lambda e: e["source"]["lsn"]):
                latest[(event["after"] or event["before"])["id"]] = event["after"]
            replayed = sorted(tuple(str(row[c]) for c in columns) for row in latest.values() if row)
            assert replayed == source, table


def test_database_offsets_without_a_password_are_refused_before_the_engine_starts(shop_db: str) -> None:
    result = run_cli("cdc", "run", "-d", shop_db, "-o", "file:///nowhere", "--offsets", "database")
    assert result.exit_code == 2 and "JDBC offset store connects with a password" in result.output
