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
  first, typed from its values (tables.py).
- BigQuery: the Storage Write API's CDC upserts (``_CHANGE_TYPE`` UPSERT, ``_CHANGE_SEQUENCE_NUMBER``
  = the LSN in hex), which BigQuery applies in sequence-number order per primary key: the
  same rule, applied by BigQuery. Deletes are upserts with ``_deleted`` true, as locally.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from beam_pipelines.cdc.envelope import Change
from beam_pipelines.cdc.tables import SourceTable, bigquery_type, duckdb_type, infer_type

__all__ = ["META_COLUMNS", "ApplyResult", "DuckDBReplicas", "bigquery_cdc_element", "bigquery_replica_schema",
           "latest_per_key", "replica_name"]

#: The change metadata of a replica row: name -> (DuckDB type, BigQuery type, nullable).
META_COLUMNS: dict[str, tuple[str, str, bool]] = {
    "_op": ("VARCHAR", "STRING", False),
    "_lsn": ("BIGINT", "INT64", False),
    "_tx_id": ("BIGINT", "INT64", True),
    "_source_ts": ("TIMESTAMPTZ", "TIMESTAMP", False),
    "_deleted": ("BOOLEAN", "BOOL", False),
    "_ingested_at": ("TIMESTAMPTZ", "TIMESTAMP", False),
}
#: One writer at a time per DuckDB file in this process (the runner may run bundles in threads).
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def replica_name(table: str) -> str:
    return f"{table}_current"


def latest_per_key(changes: Iterable[Change]) -> list[Change]:
    """The change with the highest LSN of each (table, key)."""
    latest: dict[tuple[str, tuple[Any, ...]], Change] = {}
    for change in changes:
        held = latest.get((change.table, change.key))
        if held is None or change.lsn > held.lsn:
            latest[(change.table, change.key)] = change
    return list(latest.values())


def replica_row(change: Change, ingested_at: datetime) -> dict[str, Any]:
    return {**change.row, "_op": change.op, "_lsn": change.lsn, "_tx_id": change.tx_id,
            "_source_ts": change.source_ts, "_deleted": change.deleted, "_ingested_at": ingested_at}


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
        return {r[0] for r in self.con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                                               [replica_name(name)]).fetchall()}

    @staticmethod
    def create_sql(table: SourceTable) -> str:
        columns = [f"{_quote(c.name)} {duckdb_type(c.pg_type)}" for c in table.columns]
        columns += [f"{_quote(name)} {types[0]}{'' if types[2] else ' NOT NULL'}" for name, types in META_COLUMNS.items()]
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
                    self.con.register("replica_batch", pa.Table.from_pylist(rows))
                    updates = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in names if c not in table.primary_key)
                    (count,) = self.con.execute(
                        f"INSERT INTO {replica} BY NAME SELECT * FROM replica_batch "
                        f"ON CONFLICT ({', '.join(_quote(k) for k in table.primary_key)}) DO UPDATE SET {updates} "
                        f"WHERE excluded._lsn > {replica}._lsn").fetchone()
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
                    self.con.execute(f"ALTER TABLE {_quote(replica)} ADD COLUMN {_quote(column)} "
                                     f"{duckdb_type(infer_type(value))}")
                    existing.add(column)
                    added += 1
        return added


def bigquery_replica_schema(table: SourceTable) -> dict[str, Any]:
    """The replica's BigQuery schema (the source columns, then the metadata)."""
    fields = [{"name": c.name, "type": bigquery_type(c.pg_type),
               "mode": "REQUIRED" if c.name in table.primary_key else "NULLABLE"} for c in table.columns]
    fields += [{"name": name, "type": types[1], "mode": "NULLABLE" if types[2] else "REQUIRED"}
               for name, types in META_COLUMNS.items()]
    return {"fields": fields}


def bigquery_cdc_element(change: Change, ingested_at: datetime, table: SourceTable) -> dict[str, Any]:
    """The element WriteToBigQuery's CDC writes take: the record and its mutation info.

    Columns the replica's schema does not have (added upstream after the table was created)
    are left out: BigQuery rejects unknown fields; the changelog keeps them."""
    known = set(table.column_names) | set(META_COLUMNS)
    record = {k: v for k, v in replica_row(change, ingested_at).items() if k in known}
    return {"record": record, "row_mutation_info": {"mutation_type": "UPSERT", "change_sequence_number": f"{change.lsn:X}"}}
