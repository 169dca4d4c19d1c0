"""The CDC tables' layout in the warehouse: names, BigQuery schemas, the replica view.

The CDC job writes these (beam_pipelines/cdc) and the infrastructure program creates them
(infra/warehouse.py): both read them here. Per captured table: ``<table>_changelog`` (every
change), and for the replicated tables ``<table>_current_changes`` (typed changes, appended)
with the view ``<table>_current`` (the row with the highest LSN per key).
"""

from __future__ import annotations

from typing import Any

from streamforge.cdc.tables import SourceTable, bigquery_type

__all__ = [
    "META_COLUMNS",
    "bigquery_replica_schema",
    "bigquery_replica_table",
    "changelog_name",
    "changes_name",
    "replica_name",
    "replica_view_sql",
]

#: The change metadata of a replica row: name -> (DuckDB type, BigQuery type, nullable).
META_COLUMNS: dict[str, tuple[str, str, bool]] = {
    "_op": ("VARCHAR", "STRING", False),
    "_lsn": ("BIGINT", "INT64", False),
    "_tx_id": ("BIGINT", "INT64", True),
    "_source_ts": ("TIMESTAMPTZ", "TIMESTAMP", False),
    "_deleted": ("BOOLEAN", "BOOL", False),
    "_ingested_at": ("TIMESTAMPTZ", "TIMESTAMP", False),
}


def changelog_name(table: str) -> str:
    """Every change of the table, in the shape of the ``cdc_change`` schema."""
    return f"{table}_changelog"


def replica_name(table: str) -> str:
    return f"{table}_current"


def changes_name(table: str) -> str:
    """BigQuery: the append-only table of typed changes the ``<table>_current`` view reads."""
    return f"{replica_name(table)}_changes"


def bigquery_replica_schema(table: SourceTable) -> dict[str, Any]:
    """The BigQuery schema of ``<table>_current_changes`` (the source columns, then the metadata)."""
    fields = [
        {
            "name": c.name,
            "type": bigquery_type(c.pg_type),
            "mode": "REQUIRED" if c.name in table.primary_key else "NULLABLE",
        }
        for c in table.columns
    ]
    fields += [
        {"name": name, "type": types[1], "mode": "NULLABLE" if types[2] else "REQUIRED"}
        for name, types in META_COLUMNS.items()
    ]
    return {"fields": fields}


def bigquery_replica_table(table: SourceTable) -> dict[str, Any]:
    """How ``<table>_current_changes`` is created: by day of commit, clustered by the key."""
    return {
        "timePartitioning": {"type": "DAY", "field": "_source_ts"},
        "clustering": {"fields": list(table.primary_key[:4])},
    }


def replica_view_sql(table: SourceTable, changes: str) -> str:
    """The query of the ``<table>_current`` view over ``changes`` (a quoted table reference):
    the row of each key with the highest LSN. The same SQL runs in BigQuery and DuckDB (key
    columns are plain identifiers: schema.sql's columns match ``\\w+``)."""
    key = ", ".join(table.primary_key)
    return f"SELECT * FROM {changes} WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY _lsn DESC) = 1"
