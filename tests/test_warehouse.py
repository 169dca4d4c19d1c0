"""One writer, readers that never block it (streamforge/warehouse.py), checked across processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from streamforge.warehouse import WarehouseWriter, open_for_reading, snapshot_path

READ = """
import sys
from streamforge.warehouse import open_for_reading
with open_for_reading(sys.argv[1]) as reading:
    print(reading.snapshot, reading.connection.execute("SELECT count(*) FROM t").fetchone()[0])
"""
PLAIN_OPEN = "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True)"


def _in_another_process(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)


def test_readers_get_the_snapshot_while_the_writer_keeps_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    writer = WarehouseWriter(str(path), snapshot_every_s=0.0)
    try:
        writer.ensure("t", "CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        with writer.lock:
            writer.connection.execute("INSERT INTO t VALUES (1), (2)")
            writer.wrote()  # publishes a snapshot
        assert _in_another_process(READ, path).stdout.split() == ["True", "2"]
        # publishing the snapshot did not cost the writer its lock on the file
        refused = _in_another_process(PLAIN_OPEN, path)
        assert refused.returncode != 0 and "lock" in refused.stderr.lower()
        with writer.lock:
            writer.connection.execute("INSERT INTO t VALUES (3)")
            writer.wrote()
        assert _in_another_process(READ, path).stdout.split() == ["True", "3"]
    finally:
        writer.close()
    assert not snapshot_path(path).exists()  # once closed, readers open the file itself
    with open_for_reading(path) as reading:
        assert not reading.snapshot
        assert reading.connection.execute("SELECT count(*) FROM t").fetchone() == (3,)


def test_a_busy_warehouse_without_a_snapshot_says_so(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        result = _in_another_process(READ, path)
        assert result.returncode != 0
        assert "is being written by another process" in result.stderr and "snapshot" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    duckdb.connect(str(path), read_only=True).close()  # free again


def _insert(statements: list[int]):
    def statement(con, rows) -> None:
        statements.append(len(rows))
        con.executemany("INSERT OR REPLACE INTO t VALUES (?, ?)", [(r["k"], r["v"]) for r in rows])

    return statement


def test_a_streaming_writer_gathers_a_tables_rows_into_one_statement(tmp_path: Path) -> None:
    """Panes come a bundle each: the writer gathers a table's rows for ``gather_s`` and writes
    them in one statement, from its own thread when no other write comes; a later row of a key
    replaces the gathered one (or is ignored), and closing writes what is left."""
    path = tmp_path / "warehouse.duckdb"
    writer = WarehouseWriter(str(path), snapshot_every_s=None, gather_s=0.3)
    statements: list[int] = []
    try:
        writer.ensure("t", "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v VARCHAR)")
        for n in range(5):
            writer.write("t", {(n,): {"k": n, "v": "early"}}, _insert(statements))
        writer.write("t", {(0,): {"k": 0, "v": "final"}}, _insert(statements))
        writer.write("t", {(1,): {"k": 1, "v": "replayed"}}, _insert(statements), replace=False)
        assert statements == []  # nothing written yet
        deadline = time.monotonic() + 10
        while not statements and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statements == [5]  # one statement, by the writer's thread, with no other write coming
        with writer.lock:
            rows = writer.connection.execute("SELECT k, v FROM t ORDER BY k").fetchall()
        assert rows == [(0, "final"), (1, "early"), (2, "early"), (3, "early"), (4, "early")]
        writer.write("t", {(9,): {"k": 9, "v": "last"}}, _insert(statements))
    finally:
        writer.close()
    assert statements == [5, 1]
    assert duckdb.connect(str(path), read_only=True).execute("SELECT v FROM t WHERE k = 9").fetchone() == ("last",)


def test_a_pipeline_does_not_wait_for_a_gathered_statement(tmp_path: Path) -> None:
    """A statement over a large table takes long, and the pipeline's worker waited for it at
    its next write: the writer's own thread writes gathered
    rows, and a write meanwhile only gathers. A table whose statement took long is written
    less often (four times as long as its statement took, not every ``gather_s``)."""
    writer = WarehouseWriter(str(tmp_path / "warehouse.duckdb"), snapshot_every_s=None, gather_s=0.1)
    written: list[tuple[float, int]] = []  # (when, rows) of each statement
    inside, release = threading.Event(), threading.Event()

    def slow(con, rows) -> None:
        inside.set()
        release.wait(30)
        written.append((time.monotonic(), len(rows)))
        con.executemany("INSERT OR REPLACE INTO t VALUES (?, ?)", [(r["k"], r["v"]) for r in rows])

    try:
        writer.ensure("t", "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v VARCHAR)")
        writer.write("t", {(1,): {"k": 1, "v": "first"}}, slow)
        assert inside.wait(10)  # the writer's thread is in the statement, holding the connection
        worker = threading.Thread(target=writer.write, args=("t", {(2,): {"k": 2, "v": "next"}}, slow))
        worker.start()
        worker.join(10)
        gathered_meanwhile = not worker.is_alive()
        gathered_at = time.monotonic()
        time.sleep(0.5)  # the first statement takes at least this long
        release.set()
        worker.join()
        assert gathered_meanwhile  # before: the write waited for the statement to end
        deadline = time.monotonic() + 20
        while len(written) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [rows for _, rows in written] == [1, 1]
        assert written[1][0] - gathered_at >= 4 * 0.5  # not every 0.1 s: four times the last statement
    finally:
        release.set()
        writer.close()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [(1, "first"), (2, "next")]


def test_a_failed_gathered_write_is_raised_to_the_next_writer(tmp_path: Path) -> None:
    writer = WarehouseWriter(str(tmp_path / "warehouse.duckdb"), snapshot_every_s=None, gather_s=0.1)

    def broken(con, rows) -> None:
        con.execute("INSERT INTO no_such_table VALUES (1)")

    try:
        writer.write("t", [{"k": 1}], broken)
        time.sleep(0.5)  # the writer's thread tried it and failed
        with pytest.raises(RuntimeError, match="no_such_table"):
            writer.write("t", [{"k": 2}], _insert([]))
    finally:
        writer._gathered.clear()
        writer.close()


def test_snapshots_come_less_often_once_a_copy_takes_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warehouse grows all day and its snapshot is a copy made while the writer waits: once a
    copy takes longer than a tenth of the interval, the next one waits ten times as long."""
    import streamforge.warehouse as warehouse

    copies: list[float] = []
    real_run = subprocess.run

    def slow_copy(args, **kwargs):
        copies.append(time.monotonic())
        time.sleep(0.1)  # as a large file's copy takes
        return real_run(args, **kwargs)

    monkeypatch.setattr(warehouse.subprocess, "run", slow_copy)
    writer = WarehouseWriter(str(tmp_path / "warehouse.duckdb"), snapshot_every_s=0.05)
    try:
        writer.ensure("t", "CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            with writer.lock:
                writer.connection.execute("INSERT INTO t VALUES (1)")
                writer.wrote()
            time.sleep(0.01)
    finally:
        writer.close()
    gaps = [later - earlier for earlier, later in zip(copies, copies[1:])]
    assert 2 <= len(copies) <= 3 and all(gap >= 1.0 for gap in gaps)  # every 0.05 s: about 16 copies
