"""Spark schemas of the event streams, derived from their Avro schemas (the one source).

The ``.avsc`` files are read as JSON (no fastavro: the Dataproc runtime does not have it).
Two forms per stream:

- ``json_schema``: how a JSON line is parsed. Decimals and timestamps stay strings so that
  validation can check them exactly (a number's decimal places, an RFC 3339 form) before
  converting; a column ``_corrupt`` receives lines that are not JSON or hold a value of the
  wrong type.
- ``typed_schema``: the clean form the metrics use: decimals as DecimalType(p, s),
  timestamps as TimestampType (UTC).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from pyspark.sql import types as T

from streamforge.transport import STREAM_SCHEMAS

__all__ = ["CORRUPT", "STREAMS", "Field", "fields", "json_schema", "typed_schema", "avro_definition"]

CORRUPT = "_corrupt"
_FILE = re.compile(r"(?P<subject>[a-z_]+)\.v(?P<version>\d+)\.avsc")


@lru_cache(maxsize=None)
def avro_definition(subject: str) -> dict[str, Any]:
    """The latest version of ``subject`` from streamforge/schemas/avro (in the checkout or the job's zip)."""
    directory = resources.files("streamforge").joinpath("schemas").joinpath("avro")
    versions = {}
    for entry in directory.iterdir():
        match = _FILE.fullmatch(entry.name)
        if match and match["subject"] == subject:
            versions[int(match["version"])] = entry
    if not versions:
        raise LookupError(f"no schema file for {subject} in {directory}")
    return json.loads(versions[max(versions)].read_text(encoding="utf-8"))


#: Stream -> (schema subject, the warehouse table the pipelines write its events to, as the
#: schema's ``bigquery`` declaration names it).
STREAMS = {
    stream: (subject, avro_definition(subject)["bigquery"]["table"]) for stream, subject in STREAM_SCHEMAS.items()
}


@dataclass(frozen=True)
class Field:
    """One field: its name, Avro type (without the null branch), nullability and constraints."""

    name: str
    avro: Any
    nullable: bool
    constraints: dict[str, Any]

    @property
    def kind(self) -> str:
        """string, int, long, double, boolean, decimal, timestamp, enum, array or record."""
        avro = self.avro
        if isinstance(avro, str):
            return avro
        logical = avro.get("logicalType")
        if logical == "decimal":
            return "decimal"
        if logical == "timestamp-millis":
            return "timestamp"
        return avro["type"]

    def children(self) -> tuple[Field, ...]:
        """The fields of an array's record items (or a record's own fields)."""
        record = self.avro["items"] if self.kind == "array" else self.avro
        return fields_of(record)


_CONSTRAINTS = ("minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems")


def fields_of(record: dict[str, Any]) -> tuple[Field, ...]:
    out = []
    for f in record["fields"]:
        avro = f["type"]
        nullable = isinstance(avro, list) and "null" in avro
        if isinstance(avro, list):
            (avro,) = [t for t in avro if t != "null"]
        out.append(Field(f["name"], avro, nullable, {k: f[k] for k in _CONSTRAINTS if k in f}))
    return tuple(out)


def fields(stream: str) -> tuple[Field, ...]:
    return fields_of(avro_definition(STREAMS[stream][0]))


_PLAIN_TYPES = {
    "string": T.StringType(),
    "enum": T.StringType(),
    "int": T.IntegerType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "boolean": T.BooleanType(),
}


def _spark_type(field: Field, typed: bool) -> T.DataType:
    kind = field.kind
    if kind in _PLAIN_TYPES:
        return _PLAIN_TYPES[kind]
    if kind == "decimal":
        return T.DecimalType(field.avro["precision"], field.avro.get("scale", 0)) if typed else T.StringType()
    if kind == "timestamp":
        return T.TimestampType() if typed else T.StringType()
    if kind == "array":
        items = field.avro["items"]
        element = (
            _struct(field.children(), typed)
            if isinstance(items, dict) and items.get("type") == "record"
            else _spark_type(Field("item", items, False, {}), typed)
        )
        return T.ArrayType(element, True)
    if kind == "record":
        return _struct(field.children(), typed)
    raise TypeError(f"no Spark type for Avro {field.avro!r} ({field.name})")


def _struct(children: tuple[Field, ...], typed: bool) -> T.StructType:
    return T.StructType([T.StructField(c.name, _spark_type(c, typed), True) for c in children])


def json_schema(stream: str) -> T.StructType:
    """Every field nullable (validation reports what is missing), plus the corrupt-record column."""
    return T.StructType(
        [T.StructField(f.name, _spark_type(f, False), True) for f in fields(stream)]
        + [T.StructField(CORRUPT, T.StringType(), True)]
    )


def typed_schema(stream: str) -> T.StructType:
    return T.StructType([T.StructField(f.name, _spark_type(f, True), f.nullable) for f in fields(stream)])
