"""BigQuery table schemas are derived from the Avro definitions, never written twice."""

from __future__ import annotations

import json

import pytest
from google.cloud import bigquery

from streamforge.schemas import SCHEMA_DIR, registry
from tests.support.cli import run_cli

TABLES = {
    "clickstream_event": "clickstream_events",
    "order_event": "order_events",
    "fraud_alert": "fraud_alerts",
    "session_aggregate": "user_sessions",
    "revenue_per_minute": "revenue_per_minute",
    "revenue_by_category_region": "revenue_by_category_region",
    "dead_letter": "dead_letter",
}
# Avro type (as written in the .avsc) -> BigQuery type: the mapping restated independently.
EXPECTED_TYPES = {
    "string": "STRING",
    "int": "INTEGER",
    "long": "INTEGER",
    "double": "FLOAT",
    "boolean": "BOOLEAN",
    "decimal": "NUMERIC",
    "timestamp-millis": "TIMESTAMP",
    "enum": "STRING",
    "record": "RECORD",
}


def _avro_kind(avro_type: object, has_default: bool = False) -> tuple[str, str]:
    mode = "NULLABLE" if has_default else "REQUIRED"
    if isinstance(avro_type, list):
        avro_type, mode = next(t for t in avro_type if t != "null"), "NULLABLE"
    if isinstance(avro_type, dict) and avro_type["type"] == "array":
        avro_type, mode = avro_type["items"], "REPEATED"
    if isinstance(avro_type, dict):
        return avro_type.get("logicalType") or avro_type["type"], mode
    return str(avro_type), mode


@pytest.mark.parametrize("subject", sorted(TABLES))
def test_columns_follow_the_avsc_file(subject: str) -> None:
    schema = registry().get(subject)
    table = schema.bigquery
    assert table is not None and table.table == TABLES[subject]
    raw = json.loads((SCHEMA_DIR / f"{subject}.v{schema.version}.avsc").read_text())  # the latest file
    columns = table.schema_json()
    assert [c["name"] for c in columns] == [f["name"] for f in raw["fields"]]
    for field, column in zip(raw["fields"], columns):
        kind, mode = _avro_kind(field["type"], "default" in field)
        assert (column["type"], column["mode"]) == (EXPECTED_TYPES[kind], mode), field["name"]
        assert column.get("description") == field.get("doc")
    # The BigQuery client accepts every column as written.
    parsed = [bigquery.SchemaField.from_api_repr(c) for c in columns]
    assert [p.name for p in parsed] == [c["name"] for c in columns]


@pytest.mark.parametrize("subject", sorted(TABLES))
def test_each_version_is_a_schema_change_bigquery_makes_in_place(subject: str) -> None:
    """BigQuery's rule for changing a table's schema: existing columns keep their name, type and
    position, a mode only relaxes (REQUIRED to NULLABLE), and a new column is NULLABLE or
    REPEATED. Otherwise `pulumi up` would replace the table (its rows with it)."""
    versions = registry().versions(subject)
    for before, after in zip(versions, versions[1:]):
        old, new = before.bigquery.schema_json(), after.bigquery.schema_json()
        assert [(c["name"], c["type"]) for c in new[: len(old)]] == [(c["name"], c["type"]) for c in old]
        for was, now in zip(old, new):
            assert now["mode"] == was["mode"] or (was["mode"], now["mode"]) == ("REQUIRED", "NULLABLE"), now
        assert all(c["mode"] in ("NULLABLE", "REPEATED") for c in new[len(old) :]), after.label


@pytest.mark.parametrize("subject", sorted(TABLES))
def test_partitioning_and_clustering(subject: str) -> None:
    table = registry().get(subject).bigquery
    columns = {c["name"]: c for c in table.schema_json()}
    assert columns[table.partition_field]["type"] == "TIMESTAMP"
    assert table.partition_type == "DAY"
    assert 0 <= len(table.clustering) <= 4
    assert all(columns[c]["mode"] != "REPEATED" for c in table.clustering)


def test_order_items_become_a_repeated_record() -> None:
    columns = {c["name"]: c for c in registry().get("order_event").bigquery.schema_json()}
    items = columns["items"]
    assert (items["type"], items["mode"]) == ("RECORD", "REPEATED")
    assert [(f["name"], f["type"]) for f in items["fields"]] == [
        ("product_id", "STRING"),
        ("category", "STRING"),
        ("quantity", "INTEGER"),
        ("unit_price", "NUMERIC"),
    ]
    assert columns["total_amount"]["precision"] == 15 and columns["total_amount"]["scale"] == 2


def test_cli_prints_the_derived_schema() -> None:
    result = run_cli("schemas", "show", "fraud_alert", "--bigquery")
    assert result.exit_code == 0
    assert json.loads(result.output) == registry().get("fraud_alert").bigquery.schema_json()
