"""The local DuckDB warehouse: one writer, and readers that never block it.

DuckDB lets one process open a database file for writing and no other process open it at
all meanwhile (a read-only open fails with "Could not set lock on file", and a reader that
holds the file makes the writer's next open fail). So a run that writes the warehouse keeps
one connection for the whole run (``WarehouseWriter``) and, every ``SNAPSHOT_EVERY_S`` while
it writes (or less often once a copy takes longer than a tenth of that), publishes a consistent copy beside it: ``<file>.snapshot`` (a CHECKPOINT, a copy,
an atomic rename). Readers (``streamforge report``, the dashboard) call ``open_for_reading``:
the file itself when no run holds it, else the latest snapshot, at most a few seconds old.
A server database would give readers the live state, at the cost of a server to run; the
snapshot keeps the warehouse a file (docs/live.md, "Reading while it is written").
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["GATHER_S", "SNAPSHOT_EVERY_S", "WarehouseBusy", "WarehouseWriter", "open_for_reading", "snapshot_path"]

#: How often a writing run publishes a snapshot for readers (seconds).
SNAPSHOT_EVERY_S = 2.0
#: A snapshot is published at most every this many times as long as the last one took: its
#: copy grows with the warehouse, and holds the writer meanwhile (at most a tenth of its time).
_SNAPSHOT_COST = 10
#: How long a streaming run gathers the rows of a table to write them in one statement: its
#: panes come one bundle each, a row or two, and a statement per bundle cost a few ms each.
GATHER_S = 0.5
#: A table's gathered rows are written at once when this many are waiting.
_GATHER_ROWS = 50_000
#: A table is written at most every this many times as long as its last statement took.
_WRITE_COST = 4
#: How long a writer waits for a reader that holds the file (readers hold it for one query).
_OPEN_WAIT_S = 15.0


class WarehouseBusy(RuntimeError):
    """The warehouse file is held by another process and there is no snapshot to read."""


def snapshot_path(path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(path)}.snapshot")


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower()


@dataclass
class Reading:
    """A read-only connection and what it reads: the file itself, or a snapshot of ``age_s``."""

    connection: Any
    snapshot: bool
    age_s: float = 0.0

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Reading:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_for_reading(path: str | os.PathLike[str]) -> Reading:
    """A read-only connection to the warehouse, or to its snapshot while a run writes it."""
    import duckdb

    try:
        return Reading(duckdb.connect(os.fspath(path), read_only=True), snapshot=False)
    except duckdb.IOException as exc:
        if not _is_lock_error(exc):
            raise
    snapshot = snapshot_path(path)
    try:
        age = time.time() - snapshot.stat().st_mtime
        return Reading(duckdb.connect(str(snapshot), read_only=True), snapshot=True, age_s=age)
    except (FileNotFoundError, duckdb.IOException):
        raise WarehouseBusy(
            f"{os.fspath(path)} is being written by another process, which has not published a "
            f"snapshot ({snapshot.name}) yet; try again in a few seconds"
        ) from None


@dataclass
class _Gathered:
    """One table's rows waiting to be written together: by key (a later row of a key replaces
    the earlier one, or is ignored) or, for a table without a key, in order."""

    since: float
    statement: Callable[[Any, list[dict[str, Any]]], None]
    rows: dict[Any, dict[str, Any]] | list[dict[str, Any]]


class WarehouseWriter:
    """This process's one connection to a warehouse file, shared by every sink (thread-safe).

    With ``gather_s`` (streaming runs), ``write`` gathers a table's rows for that long (longer for
    a table whose statements take long) and the writer's own thread writes them in one
    statement and publishes the snapshots, so that a pipeline's worker does not wait for
    DuckDB; ``flush`` and ``close`` write what is gathered. Without it every ``write`` is
    written at once."""

    def __init__(
        self,
        path: str,
        snapshot_every_s: float | None = SNAPSHOT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        gather_s: float | None = None,
    ):
        import duckdb

        self.path, self.snapshot_every_s, self.clock, self.gather_s = path, snapshot_every_s, clock, gather_s
        self.lock = threading.RLock()
        deadline = clock() + _OPEN_WAIT_S
        while True:
            try:
                self.connection = duckdb.connect(path)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc) or clock() > deadline:
                    raise
                time.sleep(0.1)  # a reader holds the file for a moment
        self.ensured: set[str] = set()
        self._last_snapshot = clock()
        self._snapshot_interval = snapshot_every_s or 0.0
        self._written_since_snapshot = False
        self._gathered: dict[str, _Gathered] = {}
        self._gathering = threading.Lock()  # guards _gathered; ``lock`` guards the connection
        self._took: dict[str, float] = {}  # table -> how long its last gathered statement took
        self._failure: BaseException | None = None
        self._closing = threading.Event()
        self._gatherer: threading.Thread | None = None
        if gather_s:
            self._gatherer = threading.Thread(target=self._write_when_due, name=f"write {path}", daemon=True)
            self._gatherer.start()

    def write(
        self,
        table: str,
        rows: dict[Any, dict[str, Any]] | list[dict[str, Any]],
        statement: Callable[[Any, list[dict[str, Any]]], None],
        replace: bool = True,
    ) -> None:
        """Write ``rows`` of ``table`` with ``statement(connection, rows)``: now, or gathered with
        the table's other rows (``rows`` by key: a later row of a key replaces the gathered one
        if ``replace``, else the first stays). Gathered rows are written by the writer's thread:
        the caller (a pipeline's worker) waits for a statement or a snapshot only when a table
        has ``_GATHER_ROWS`` rows waiting."""
        self._raise_failure()
        if not self.gather_s:
            with self.lock:
                statement(self.connection, list(rows.values()) if isinstance(rows, dict) else rows)
                self.wrote()
            return
        with self._gathering:
            gathered = self._gathered.get(table)
            if gathered is None:
                gathered = self._gathered[table] = _Gathered(
                    self.clock(), statement, {} if isinstance(rows, dict) else []
                )
            if isinstance(rows, dict):
                if replace:
                    gathered.rows.update(rows)
                else:
                    for key, row in rows.items():
                        gathered.rows.setdefault(key, row)
            else:
                gathered.rows.extend(rows)
            full = len(gathered.rows) >= _GATHER_ROWS
        if full:
            with self.lock:
                self._write_gathered(table)

    def flush(self) -> None:
        """Write every gathered row now (raises what a write from the writer's thread raised)."""
        with self.lock:
            with self._gathering:
                tables = list(self._gathered)
            for table in tables:
                self._write_gathered(table)
            self._raise_failure()

    def _write_gathered(self, table: str) -> None:
        """Write ``table``'s gathered rows (holding ``lock``: tables are written in the order
        their rows were taken from the gathering)."""
        with self._gathering:
            gathered = self._gathered.pop(table, None)
        if gathered is None:
            return
        rows = list(gathered.rows.values()) if isinstance(gathered.rows, dict) else gathered.rows
        if rows:
            started = self.clock()
            gathered.statement(self.connection, rows)
            self._took[table] = self.clock() - started
            self.wrote()

    def _due(self, table: str, gathered: _Gathered) -> bool:
        """A table is written ``gather_s`` after its first waiting row, or ``_WRITE_COST`` times as
        long as its last statement took, if longer (a table that grows all day is written less
        often, in larger statements, rather than taking the writer's whole time)."""
        assert self.gather_s is not None
        wait = max(self.gather_s, _WRITE_COST * self._took.get(table, 0.0))
        return self.clock() - gathered.since >= wait

    def _write_when_due(self) -> None:
        assert self.gather_s is not None
        while not self._closing.wait(self.gather_s / 2):
            with self.lock:
                try:
                    with self._gathering:
                        due = [table for table, gathered in self._gathered.items() if self._due(table, gathered)]
                    for table in due:
                        self._write_gathered(table)
                except BaseException as exc:  # noqa: BLE001 - raised in the pipeline's thread, at its next write
                    self._failure = self._failure or exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise RuntimeError(f"writing {self.path} failed: {failure}") from failure

    def ensure(self, name: str, ddl: str) -> None:
        """Run ``ddl`` (a CREATE ... IF NOT EXISTS) once per name for this connection."""
        if name not in self.ensured:
            with self.lock:
                self.connection.execute(ddl)
                self.ensured.add(name)

    def wrote(self) -> None:
        """Called (holding ``lock``) after a write: publishes a snapshot when one is due: every
        ``snapshot_every_s``, or every ``_SNAPSHOT_COST`` times as long as the last one took, if
        longer (a copy of a file that grows all day must not take the writer's whole time)."""
        self._written_since_snapshot = True
        if self.snapshot_every_s is not None and self.clock() - self._last_snapshot >= self._snapshot_interval:
            self.snapshot()

    def snapshot(self) -> None:
        with self.lock:
            started = time.perf_counter()
            self.connection.execute("CHECKPOINT")
            target = snapshot_path(self.path)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            # Copied by another process: DuckDB's lock is a POSIX record lock, which this process
            # would lose as soon as it closed any descriptor of the file (as a copy here does).
            subprocess.run(["cp", self.path, str(partial)], check=True)
            os.replace(partial, target)
            took = time.perf_counter() - started
            self._snapshot_interval = max(self.snapshot_every_s or 0.0, _SNAPSHOT_COST * took)
            self._last_snapshot = self.clock()
            self._written_since_snapshot = False

    def close(self) -> None:
        """Write what is gathered and close the connection; the snapshot goes (readers now open
        the file itself)."""
        self._closing.set()
        if self._gatherer is not None:
            self._gatherer.join()
        with self.lock:
            try:
                self.flush()
            finally:
                self.connection.close()
                snapshot_path(self.path).unlink(missing_ok=True)
