"""BigQuery table schemas derived from the Avro definitions (never written by hand).

Each .avsc that declares a ``bigquery`` attribute becomes a table: columns from the fields
(``doc`` becomes the column description), day partitioning on ``partition_field`` and
clustering on ``clustering``. A non-null field is REQUIRED unless it has a default: a field a
later version added is NULLABLE, so the deployed table can gain it in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from streamforge.schemas.errors import SchemaDefinitionError

__all__ = ["BigQueryTable", "bigquery_fields", "bigquery_table"]

_PRIMITIVE = {
    "string": "STRING",
    "int": "INTEGER",
    "long": "INTEGER",
    "float": "FLOAT",
    "double": "FLOAT",
    "boolean": "BOOLEAN",
    "bytes": "BYTES",
}
_CLUSTERABLE = {"STRING", "INTEGER", "NUMERIC", "BIGNUMERIC", "BOOLEAN", "DATE", "TIMESTAMP"}


@dataclass(frozen=True)
class BigQueryTable:
    """Where and how a schema lands in BigQuery."""

    table: str
    fields: tuple[dict[str, Any], ...]
    partition_field: str | None
    partition_type: str
    clustering: tuple[str, ...]

    def schema_json(self) -> list[dict[str, Any]]:
        """The ``schema.fields`` list of the BigQuery REST API (bq, Terraform, Pulumi)."""
        return [dict(f) for f in self.fields]


def bigquery_fields(definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    named: dict[str, Any] = {}
    return [_field(f, named) for f in definition["fields"]]


def bigquery_table(definition: Mapping[str, Any]) -> BigQueryTable | None:
    meta = definition.get("bigquery")
    if meta is None:
        return None
    fields = bigquery_fields(definition)
    by_name = {f["name"]: f for f in fields}
    where = f"{definition['name']}.bigquery"
    partition = meta.get("partition_field")
    if partition is not None:
        column = by_name.get(partition)
        if column is None or column["type"] not in ("TIMESTAMP", "DATE") or column["mode"] == "REPEATED":
            raise SchemaDefinitionError(f"{where}: partition_field '{partition}' must be a TIMESTAMP or DATE column")
    clustering = tuple(meta.get("clustering", ()))
    if len(clustering) > 4:
        raise SchemaDefinitionError(f"{where}: BigQuery allows at most 4 clustering columns")
    for name in clustering:
        column = by_name.get(name)
        if column is None or column["type"] not in _CLUSTERABLE or column["mode"] == "REPEATED":
            raise SchemaDefinitionError(f"{where}: cannot cluster on '{name}'")
    return BigQueryTable(
        table=meta["table"],
        fields=tuple(fields),
        partition_field=partition,
        partition_type=meta.get("partition_type", "DAY"),
        clustering=clustering,
    )


def _field(field: Mapping[str, Any], named: dict[str, Any]) -> dict[str, Any]:
    avro_type = field["type"]
    mode = "REQUIRED"
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        if len(others) != 1:
            raise SchemaDefinitionError(f"field '{field['name']}': only [null, T] unions map to BigQuery")
        avro_type, mode = others[0], "NULLABLE"
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        if mode == "NULLABLE":
            raise SchemaDefinitionError(f"field '{field['name']}': a nullable array has no BigQuery form")
        avro_type, mode = avro_type["items"], "REPEATED"
    elif isinstance(avro_type, dict) and avro_type.get("type") == "map":
        if mode == "NULLABLE":
            raise SchemaDefinitionError(f"field '{field['name']}': a nullable map has no BigQuery form")
        mode = "REPEATED"
    if mode == "REQUIRED" and "default" in field:
        # A field with a default is one a later version added: the rows (and the table) from
        # before lack it, and BigQuery adds a column to an existing table only as NULLABLE.
        mode = "NULLABLE"
    column: dict[str, Any] = {"name": field["name"], "mode": mode}
    column.update(_column_type(avro_type, field["name"], named))
    if field.get("doc"):
        column["description"] = field["doc"]
    return column


def _column_type(avro_type: Any, name: str, named: dict[str, Any]) -> dict[str, Any]:
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVE:
            return {"type": _PRIMITIVE[avro_type]}
        short = avro_type.rpartition(".")[2]
        if short in named:
            return _column_type(named[short], name, named)
        raise SchemaDefinitionError(f"field '{name}': unknown type '{avro_type}'")
    kind = avro_type.get("type")
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        precision, scale = int(avro_type["precision"]), int(avro_type.get("scale", 0))
        numeric = "NUMERIC" if precision - scale <= 29 and scale <= 9 else "BIGNUMERIC"
        return {"type": numeric, "precision": precision, "scale": scale}
    if logical in ("timestamp-millis", "timestamp-micros"):
        return {"type": "TIMESTAMP"}
    if logical == "date":
        return {"type": "DATE"}
    if kind == "enum":
        named[avro_type["name"]] = avro_type
        return {"type": "STRING"}
    if kind == "record":
        named[avro_type["name"]] = avro_type
        return {"type": "RECORD", "fields": [_field(f, named) for f in avro_type["fields"]]}
    if kind == "map":
        values = _field({"name": "value", "type": avro_type["values"]}, named)
        return {"type": "RECORD", "fields": [{"name": "key", "type": "STRING", "mode": "REQUIRED"}, values]}
    if kind in _PRIMITIVE:
        return {"type": _PRIMITIVE[kind]}
    raise SchemaDefinitionError(f"field '{name}': Avro type {avro_type!r} has no BigQuery mapping")
