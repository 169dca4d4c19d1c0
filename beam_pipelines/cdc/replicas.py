"""Current-state replicas of source tables (``<table>_current``), kept by upsert in LSN order.

A replica row is the source row plus the change that put it there: ``_op``, ``_lsn``,
``_tx_id``, ``_source_ts``, ``_deleted``, ``_ingested_at``. A change is applied only when its
LSN is above the row's ``_lsn``, so applying changes in any order, or twice (Debezium
redelivers after a crash), leaves the same table. A delete keeps the row with ``_deleted``
true (its last image): a redelivered older change of a deleted row cannot bring it back.
The source table's current rows are ``WHERE NOT _deleted``.

- DuckDB (local): ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE excluded._lsn > _lsn``,
  one statement per table per bundle, after keeping the latest change per key. A column the
  changes carry that the replica lacks (``ALTER TABLE ... ADD COLUMN`` upstream) is added
  first, typed from its values (streamforge/cdc/tables.py).
- BigQuery: every change is appended, typed, to ``<table>_current_changes`` (streaming
  inserts or load jobs: pure Python, nothing the workers must download), and
  ``<table>_current`` is a view keeping the row with the highest LSN per key: the same rule,
  applied when the view is read, as Datastream's merge-on-read tables do. Beam's other route,
  the Storage Write API's CDC upserts, is a Java cross-language transform (a Maven download
  at construction) whose Beam schemas refuse column names that start with ``_``. Reading the
  view scans the changes table (partitioned by ``_source_ts``, clustered by the key); for
  large tables materialise it on a schedule (docs/cdc.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping

from beam_pipelines.cdc.envelope import Change
from streamforge.cdc.tables import SourceTable, duckdb_type, infer_type
from streamforge.cdc.warehouse import META_COLUMNS, replica_name

__all__ = ["ApplyResult", "DuckDBReplicas", "bigquery_replica_row", "latest_per_key"]

#: One writer at a time per DuckDB file in this process (the runner may run bundles in threads).
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def latest_per_key(changes: Iterable[Change]) -> list[Change]:
    """The change with the highest LSN of each (table, key)."""
    latest: dict[tuple[str, tuple[Any, ...]], Change] = {}
    for change in changes:
        held = latest.get((change.table, change.key))
        if held is None or change.lsn > held.lsn:
            latest[(change.table, change.key)] = change
    return list(latest.values())


def replica_row(change: Change, ingested_at: datetime) -> dict[str, Any]:
    return {
        **change.row,
        "_op": change.op,
        "_lsn": change.lsn,
        "_tx_id": change.tx_id,
        "_source_ts": change.source_ts,
        "_deleted": change.deleted,
        "_ingested_at": ingested_at,
    }


@dataclass
class ApplyResult:
    applied: int = 0  # rows inserted or updated
    stale: int = 0  # changes at or below the row's LSN: already applied, or superseded
    columns_added: int = 0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBReplicas:
    """Applies changes to the ``<table>_current`` tables of one DuckDB database."""

    def __init__(self, con: Any, path: str, tables: Mapping[str, SourceTable]):
        self.con, self.tables = con, dict(tables)
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(path, threading.Lock())
        with self._lock:
            for table in self.tables.values():
                con.execute(self.create_sql(table))
        self._columns = {name: self._read_columns(name) for name in self.tables}  # kept up to date by _add_new_columns

    def _read_columns(self, name: str) -> set[str]:
        return {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [replica_name(name)]
            ).fetchall()
        }

    @staticmethod
    def create_sql(table: SourceTable) -> str:
        columns = [f"{_quote(c.name)} {duckdb_type(c.pg_type)}" for c in table.columns]
        columns += [
            f"{_quote(name)} {types[0]}{'' if types[2] else ' NOT NULL'}" for name, types in META_COLUMNS.items()
        ]
        columns.append(f"PRIMARY KEY ({', '.join(_quote(k) for k in table.primary_key)})")
        return f"CREATE TABLE IF NOT EXISTS {_quote(replica_name(table.name))} (\n  " + ",\n  ".join(columns) + "\n)"

    def apply(self, changes: Iterable[Change], ingested_at: datetime) -> ApplyResult:
        import pyarrow as pa

        result = ApplyResult()
        by_table: dict[str, list[Change]] = {}
        for change in latest_per_key(changes):
            by_table.setdefault(change.table, []).append(change)
        with self._lock:
            for name, table_changes in sorted(by_table.items()):
                table, replica = self.tables[name], _quote(replica_name(name))
                rows = [replica_row(change, ingested_at) for change in table_changes]
                self.con.execute("BEGIN TRANSACTION")
                try:
                    result.columns_added += self._add_new_columns(table, rows)
                    names = list(dict.fromkeys(column for row in rows for column in row))
                    # every row with every column: Arrow takes the columns from the first row only,
                    # and a bundle may mix changes from before and after a column was added upstream
                    self.con.register(
                        "replica_batch", pa.Table.from_pylist([{n: row.get(n) for n in names} for row in rows])
                    )
                    updates = ", ".join(
                        f"{_quote(c)} = excluded.{_quote(c)}" for c in names if c not in table.primary_key
                    )
                    (count,) = self.con.execute(
                        f"INSERT INTO {replica} BY NAME SELECT * FROM replica_batch "
                        f"ON CONFLICT ({', '.join(_quote(k) for k in table.primary_key)}) DO UPDATE SET {updates} "
                        f"WHERE excluded._lsn > {replica}._lsn"
                    ).fetchone()
                    self.con.execute("COMMIT")
                except BaseException:
                    self.con.execute("ROLLBACK")
                    self._columns[name] = self._read_columns(name)  # an ALTER TABLE may have been rolled back
                    raise
                finally:
                    self.con.unregister("replica_batch")
                result.applied += count
                result.stale += len(rows) - count
        return result

    def _add_new_columns(self, table: SourceTable, rows: list[dict[str, Any]]) -> int:
        """Add the columns the rows carry that the replica lacks (a column added upstream)."""
        replica, existing = replica_name(table.name), self._columns[table.name]
        added = 0
        for row in rows:
            for column, value in row.items():
                if column not in existing and value is not None:
                    self.con.execute(
                        f"ALTER TABLE {_quote(replica)} ADD COLUMN {_quote(column)} {duckdb_type(infer_type(value))}"
                    )
                    existing.add(column)
                    added += 1
        return added


def _json_value(value: Any) -> Any:
    """A typed column value as BigQuery's JSON rows take it (microseconds kept)."""
    if isinstance(value, datetime):
        return value.isoformat()  # timestamptz aware (TIMESTAMP), timestamp naive (DATETIME)
    if isinstance(value, (date, Decimal)):
        return str(value)
    return value


def bigquery_replica_row(change: Change, ingested_at: datetime, table: SourceTable) -> dict[str, Any]:
    """A ``<table>_current_changes`` row: the change's typed row and its metadata.

    Columns the table's schema does not have (added upstream after it was created) are left
    out: BigQuery rejects unknown fields; the changelog keeps them."""
    known = set(table.column_names) | set(META_COLUMNS)
    return {k: _json_value(v) for k, v in replica_row(change, ingested_at).items() if k in known}
