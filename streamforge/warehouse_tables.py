"""Every table and view of the warehouse, as BigQuery wants it: derived, never restated.

The Pulumi program deploys these (infra/warehouse.py) and ``streamforge warehouse create``
creates them in any BigQuery (the emulator too), so the jobs, which only append, write
exactly what is deployed:

- the pipelines' tables from the Avro schemas that declare a ``bigquery`` table
  (``streamforge.schemas``): columns, descriptions, partitioning and clustering;
- per keyed table (``TABLE_KEYS``) the view ``<table>_current``: one row per key, the row the
  DuckDB table keeps (BigQuery appends every pane and every replayed row; the view picks
  the highest ``pane_index`` for a replaced key, the first row for an ignored repeat);
- per captured table (Debezium's properties file), its changelog in the ``cdc_change`` shape,
  and for the replicated ones (``[cdc] replicas``) the typed changes table and the
  ``<table>_current`` view (``streamforge.cdc.warehouse``);
- the daily batch's tables (``streamforge.schemas.daily_tables``), partitioned by ``date``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from streamforge.cdc.config import DebeziumServerConfig
from streamforge.cdc.tables import SourceTable, load_source_tables
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

__all__ = [
    "CDC_SUBJECTS",
    "OPEN_SESSION",
    "TABLE_KEYS",
    "TableKey",
    "TableSpec",
    "captured_tables",
    "current_name",
    "current_view_sql",
    "warehouse_tables",
]

#: The user_sessions rows of sessions still open: their EARLY panes (the final pane replaces
#: each), as a SQL condition for readers (report, dashboard).
OPEN_SESSION = "pane_timing = 'EARLY'"

#: Schemas only the CDC job writes (left out when CDC is).
CDC_SUBJECTS = ("cdc_change", "order_status_transition", "price_change", "stock_alert")


@dataclass(frozen=True)
class TableKey:
    """What identifies a row of a result table, and what a second row with the same key means:
    ``replace`` (a later pane: the row highest by the ``latest`` columns is current),
    ``ignore`` (a replay: the first row stays, first by ``first`` when rows may differ in it),
    ``append`` (no key: every row counts)."""

    columns: tuple[str, ...]
    repeat: str
    latest: tuple[str, ...] = ()
    first: str | None = None
    #: (owner, start, end): a row whose span lies within the span of another key's row of the
    #: same owner was merged into that row and is superseded. A session's id hashes its start,
    #: and a late click before the start joins it to a new id (docs/pipelines.md).
    within: tuple[str, str, str] | None = None

    def order_sql(self) -> str:
        """The ORDER BY that puts the row the warehouse keeps first, among rows of one key."""
        if self.repeat == "replace":
            return ", ".join(f"{column} DESC" for column in self.latest)
        return self.first or ", ".join(self.columns)  # replayed rows are equal in every column

    def superseded_sql(self, row: str, longer: str) -> str:
        """The SQL condition (BigQuery's and DuckDB's) that ``row`` lies within ``longer``, another key's row."""
        assert self.within is not None
        owner, start, end = self.within
        other_key = " OR ".join(f"{longer}.{column} <> {row}.{column}" for column in self.columns)
        return (
            f"{longer}.{owner} = {row}.{owner} AND ({other_key}) "
            f"AND {longer}.{start} <= {row}.{start} AND {row}.{end} <= {longer}.{end}"
        )


#: Schema subject -> its key. DuckDB keeps one row per key in the table itself; BigQuery
#: appends, and ``<table>_current`` holds the same rows.
TABLE_KEYS: dict[str, TableKey] = {
    # A late pane of a window holds everything of the earlier ones (accumulating) and a higher
    # pane_index; a session window merged by a late event starts its panes at 0 again, but
    # holds more events than any earlier pane of its session.
    # A late click before a session's start merges it into one that starts earlier, under
    # another session_id: the row of the shorter span is superseded.
    "session_aggregate": TableKey(
        ("session_id",),
        "replace",
        latest=("event_count", "pane_index"),
        within=("user_id", "session_start", "session_end"),
    ),
    "revenue_per_minute": TableKey(("window_start",), "replace", latest=("pane_index",)),
    "revenue_by_category_region": TableKey(("window_start", "region", "category"), "replace", latest=("pane_index",)),
    "fraud_alert": TableKey(("alert_id",), "ignore", first="detected_at"),
    "dead_letter": TableKey((), "append"),
    # The valid, deduplicated events themselves (run --raw-events): what the daily batch reads.
    "clickstream_event": TableKey(("event_id",), "ignore"),
    "order_event": TableKey(("event_id",), "ignore"),
    # CDC (beam_pipelines/cdc): a redelivered change repeats its key and LSN; the first row stays.
    "cdc_change": TableKey(("primary_key", "lsn"), "ignore", first="ingested_at"),  # one per source table
    "price_change": TableKey(("product_id", "lsn"), "ignore"),
    "stock_alert": TableKey(("product_id", "lsn"), "ignore"),
    "order_status_transition": TableKey(("order_id", "lsn"), "ignore"),
}


def current_name(table: str) -> str:
    """The view of ``table`` with one row per key (named as CDC's replicas are)."""
    return replica_name(table)


def current_view_sql(key: TableKey, table: str) -> str:
    """The query of ``<table>_current`` over ``table`` (a quoted reference). The same SQL runs
    in BigQuery and DuckDB."""
    partition = ", ".join(key.columns)
    rows = table
    if key.within:
        # Every pane of a superseded key lies within the row that superseded it. An anti-join,
        # not NOT EXISTS: the BigQuery emulator ignores a correlated NOT EXISTS (platform notes).
        rows = (
            f"(SELECT kept.* FROM {table} AS kept LEFT JOIN {table} AS longer "
            f"ON {key.superseded_sql('kept', 'longer')} WHERE longer.{key.columns[0]} IS NULL)"
        )
    return (
        f"SELECT * FROM {rows} WHERE TRUE "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {key.order_sql()}) = 1"
    )


def captured_tables(debezium: DebeziumServerConfig | None) -> dict[str, SourceTable] | None:
    """The source tables Debezium's properties capture (None without CDC), as schema.sql declares them."""
    if debezium is None:
        return None
    schema = load_source_tables()
    return {name: schema[name] for name in (t.split(".", 1)[-1] for t in debezium.tables) if name in schema}


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
        key = TABLE_KEYS[subject]
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
            if key.columns:
                specs.append(
                    TableSpec(
                        current_name(name),
                        f"One row per {', '.join(key.columns)} of {name}: "
                        + ("the latest pane." if key.repeat == "replace" else "replayed rows left out."),
                        writer,
                        view_query=current_view_sql(key, f"`{{dataset}}.{name}`"),
                        view_of=name,
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
