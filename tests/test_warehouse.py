"""One writer, readers that never block it (streamforge/warehouse.py), checked across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

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
