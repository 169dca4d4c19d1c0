"""A BigQuery warehouse: created from the declarations the Pulumi program deploys, and read the
way the local DuckDB warehouse is read.

- ``create_warehouse``: the dataset, every table and view of ``streamforge.warehouse_tables``
  (what ``pulumi up`` deploys), created where missing; a table that exists with other columns
  is a drift, refused with the differences (the jobs only append, CREATE_NEVER, so they write
  exactly what is declared). ``streamforge warehouse create`` and a local run call it.
- ``read_warehouse``: the current rows (``<table>_current`` where the table has that view, so
  one row per key as DuckDB keeps) copied into an in-memory DuckDB under the tables' own
  names, so ``streamforge report`` and the dashboard run the same SQL on both warehouses.
- ``client``: Google's BigQuery client, or the emulator's (``BIGQUERY_EMULATOR_HOST``, as
  Google's client reads it, with anonymous credentials, as Pub/Sub's client does for its
  emulator). On Google Cloud the variable is not set and nothing differs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from streamforge.naming import BIGQUERY_DATASET
from streamforge.warehouse import Reading
from streamforge.warehouse_tables import TableSpec, current_name

__all__ = [
    "EMULATOR_ENV",
    "BigQueryWarehouse",
    "WarehouseDrift",
    "WarehouseUnavailable",
    "client",
    "create_warehouse",
    "emulator_host",
    "read_warehouse",
]

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"

# BigQuery answers with either name of a type; the declarations use the first.
_TYPE_ALIASES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD", "DECIMAL": "NUMERIC"}


def emulator_host() -> str | None:
    """http://HOST:PORT of the BigQuery emulator to use, if any."""
    return os.environ.get(EMULATOR_ENV) or None


def client(project: str) -> bigquery.Client:
    """A BigQuery client for ``project``: Google's, or the emulator's."""
    if emulator_host() is None:
        return bigquery.Client(project=project)
    return bigquery.Client(project=project, credentials=AnonymousCredentials())


@dataclass(frozen=True)
class BigQueryWarehouse:
    project: str
    dataset: str

    @classmethod
    def parse(cls, url: str) -> BigQueryWarehouse:
        match = BIGQUERY_DATASET.match(url)
        if match is None:
            raise ValueError(f"{url}: expected bigquery://PROJECT.DATASET")
        return cls(match.group(1), match.group(2))

    @property
    def ref(self) -> str:
        return f"{self.project}.{self.dataset}"

    @property
    def url(self) -> str:
        return f"bigquery://{self.ref}"


class WarehouseUnavailable(RuntimeError):
    """The dataset cannot be read: it does not exist, or BigQuery cannot be reached."""


class WarehouseDrift(RuntimeError):
    """Tables of the dataset differ from their declarations; the message lists every difference."""


def _columns(fields: Iterable[Mapping[str, Any]], prefix: str = "") -> dict[str, tuple[str, str]]:
    """Column path -> (type, mode), nested records flattened."""
    found: dict[str, tuple[str, str]] = {}
    for f in fields:
        name = prefix + f["name"]
        kind = f["type"].upper()
        found[name] = (_TYPE_ALIASES.get(kind, kind), (f.get("mode") or "NULLABLE").upper())
        if f.get("fields"):
            found.update(_columns(f["fields"], name + "."))
    return found


def drift(table: str, declared: Iterable[Mapping[str, Any]], actual: Iterable[Mapping[str, Any]]) -> list[str]:
    """What differs between a table's declared and actual columns, one sentence each."""
    want, have = _columns(declared), _columns(actual)
    problems = [f"{table}.{c}: missing (declared {want[c][0]} {want[c][1]})" for c in want if c not in have]
    problems += [f"{table}.{c}: not declared ({have[c][0]} {have[c][1]})" for c in have if c not in want]
    problems += [
        f"{table}.{c}: is {have[c][0]} {have[c][1]}, declared {want[c][0]} {want[c][1]}"
        for c in want
        if c in have and have[c] != want[c]
    ]
    return problems


def create_warehouse(
    warehouse: BigQueryWarehouse,
    specs: Iterable[TableSpec],
    *,
    location: str | None = None,
    bq: bigquery.Client | None = None,
) -> list[str]:
    """Create the dataset and whatever of ``specs`` is missing; return what was created. Views
    are brought up to their declared query. Raises ``WarehouseDrift`` when a table exists with
    other columns than declared (nothing is changed in a drifted table)."""
    bq = bq or client(warehouse.project)
    dataset = bigquery.Dataset(warehouse.ref)
    if location:
        dataset.location = location
    bq.create_dataset(dataset, exists_ok=True)
    created: list[str] = []
    problems: list[str] = []
    for spec in sorted(specs, key=lambda s: s.view_query is not None):  # tables before the views over them
        ref = f"{warehouse.ref}.{spec.table_id}"
        try:
            existing = bq.get_table(ref)
        except NotFound:
            existing = None
        if spec.view_query is not None:
            query = spec.view_query.format(dataset=warehouse.ref)
            if existing is None:
                view = bigquery.Table(ref)
                view.view_query, view.description = query, spec.description
                bq.create_table(view)
                created.append(spec.table_id)
            elif existing.view_query != query:
                existing.view_query = query
                bq.update_table(existing, ["view_query"])
            continue
        if existing is not None:
            problems += drift(spec.table_id, spec.fields, [f.to_api_repr() for f in existing.schema])
            continue
        table = bigquery.Table(ref, schema=[bigquery.SchemaField.from_api_repr(dict(f)) for f in spec.fields])
        table.description = spec.description
        if spec.partition_field:
            table.time_partitioning = bigquery.TimePartitioning(field=spec.partition_field)
        if spec.clustering:
            table.clustering_fields = list(spec.clustering)
        bq.create_table(table)
        created.append(spec.table_id)
    if problems:
        raise WarehouseDrift(
            f"{warehouse.url} differs from the declared tables (streamforge/warehouse_tables.py): "
            + "; ".join(problems)
        )
    return created


def read_warehouse(
    warehouse: BigQueryWarehouse, names: Iterable[str] | None = None, *, bq: bigquery.Client | None = None
) -> Reading:
    """The current rows of the dataset's tables (``names``, or all but the CDC replicas' raw
    changes), each as a table of an in-memory DuckDB named like the BigQuery table: from its
    ``<table>_current`` view where it has one. A table the dataset lacks is left out, as a
    DuckDB warehouse lacks a table no job wrote yet. Each call reads BigQuery once."""
    import duckdb

    bq = bq or client(warehouse.project)
    try:
        present = {t.table_id for t in bq.list_tables(warehouse.ref)}
    except NotFound:
        raise WarehouseUnavailable(
            f"{warehouse.url}: no such dataset (create it: streamforge warehouse create {warehouse.url})"
        ) from None
    wanted = sorted(present if names is None else set(names) & present)
    started = time.monotonic()
    connection = duckdb.connect(":memory:")
    for name in wanted:
        if name.endswith("_changes") and name.removesuffix("_changes") in present:
            continue  # a replica's raw changes: its view is what is read
        if names is None and name.endswith("_current") and name.removesuffix("_current") in present:
            continue  # read as its table's current rows
        source = current_name(name) if current_name(name) in present else name
        rows = bq.query(f"SELECT * FROM `{warehouse.ref}.{source}`").to_arrow(create_bqstorage_client=False)
        connection.register("bigquery_rows", rows)
        connection.execute(f'CREATE TABLE "{name}" AS SELECT * FROM bigquery_rows')
        connection.unregister("bigquery_rows")
    return Reading(connection, snapshot=True, age_s=time.monotonic() - started)
