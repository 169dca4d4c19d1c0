"""Every table the deployment's writers write, as BigQuery wants it: derived, never restated.

- the pipelines' tables from the Avro schemas that declare a ``bigquery`` table
  (``streamforge.schemas``): columns, descriptions, partitioning and clustering;
- per captured table (Debezium's properties file), its changelog in the ``cdc_change`` shape,
  and for the replicated ones (``[cdc] replicas``) the typed changes table and the
  ``<table>_current`` view (``streamforge.cdc.warehouse``);
- the daily batch's tables (``streamforge.schemas.daily_tables``), partitioned by ``date``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from streamforge.cdc.tables import SourceTable
from streamforge.cdc.warehouse import (
    bigquery_replica_schema,
    bigquery_replica_table,
    changelog_name,
    changes_name,
    replica_name,
    replica_view_sql,
)
from streamforge.config import Config
from streamforge.schemas import get_schema, registry
from streamforge.schemas.daily_tables import TABLES as DAILY_TABLES
from streamforge.schemas.daily_tables import bigquery_schema

__all__ = ["CDC_SUBJECTS", "TableSpec", "warehouse_tables"]

#: Schemas only the CDC job writes (left out when CDC is).
CDC_SUBJECTS = ("cdc_change", "order_status_transition", "price_change", "stock_alert")


@dataclass(frozen=True)
class TableSpec:
    table_id: str
    description: str
    writer: str  # analytics, cdc or batch
    fields: tuple[dict[str, Any], ...] = ()
    partition_field: str | None = None
    clustering: tuple[str, ...] = ()
    view_query: str | None = None  # a view: its SQL, with {dataset} for `PROJECT.DATASET`
    view_of: str | None = None


def warehouse_tables(config: Config, source_tables: Mapping[str, SourceTable] | None) -> tuple[TableSpec, ...]:
    """The tables and views; ``source_tables=None`` leaves CDC out."""
    specs: list[TableSpec] = []
    for subject in registry().subjects():
        schema = get_schema(subject)
        table = schema.bigquery
        if table is None or (subject in CDC_SUBJECTS and source_tables is None):
            continue
        doc = schema.definition.get("doc", "")
        writer = "cdc" if subject in CDC_SUBJECTS else "analytics"
        names = [changelog_name(t) for t in sorted(source_tables or {})] if subject == "cdc_change" else [table.table]
        for name in names:
            specs.append(
                TableSpec(
                    name,
                    doc,
                    "analytics, cdc" if subject == "dead_letter" else writer,
                    tuple(table.fields),
                    table.partition_field,
                    table.clustering,
                )
            )
    for name in sorted(t for t in config.cdc.replicas if t in (source_tables or {})):
        source = source_tables[name]
        layout = bigquery_replica_table(source)
        changes = changes_name(name)
        specs.append(
            TableSpec(
                changes,
                f"Every change of {name}, typed, with its LSN: what {replica_name(name)} reads.",
                "cdc",
                tuple(bigquery_replica_schema(source)["fields"]),
                layout["timePartitioning"]["field"],
                tuple(layout["clustering"]["fields"]),
            )
        )
        specs.append(
            TableSpec(
                replica_name(name),
                f"The current rows of {name} (the change with the highest LSN "
                "per key; WHERE NOT _deleted for the live rows).",
                "cdc",
                view_query=replica_view_sql(source, f"`{{dataset}}.{changes}`"),
                view_of=changes,
            )
        )
    for table in DAILY_TABLES.values():
        specs.append(TableSpec(table.name, table.doc, "batch", tuple(bigquery_schema(table)), "date"))
    return tuple(specs)
