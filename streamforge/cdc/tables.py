"""The captured tables, read from the OLTP schema (``streamforge/cdc/schema.sql``, package data): one source of truth.

The replica tables of the warehouse (``<table>_current``) have the source table's columns,
typed from the PostgreSQL types, plus the change metadata. A column added later in
PostgreSQL (``ALTER TABLE ... ADD COLUMN``) is not in the file: its type is inferred from the
first value the change events carry (``infer_type``), and the replica gets the column then.

Values arrive as Debezium's JSON converter writes them with the connector properties of
``streamforge/cdc/debezium/application.properties``: integers and booleans as JSON numbers and booleans,
``numeric`` as decimal strings (``decimal.handling.mode=string``), ``timestamptz`` as ISO 8601
strings, ``timestamp`` as microseconds since the epoch, ``date`` as days since the epoch.
``typed_value`` turns them into Python values, or raises ``ValueError`` saying why not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Mapping

from streamforge.cdc.config import SCHEMA, cdc_file

__all__ = [
    "Column",
    "SourceTable",
    "bigquery_type",
    "duckdb_type",
    "infer_type",
    "load_source_tables",
    "parse_schema_sql",
    "typed_row",
    "typed_value",
]

_CREATE = re.compile(r"CREATE TABLE (\w+) \((.*?)\n\);", re.S)
_COLUMN = re.compile(r"^(\w+)\s+(\w+(?:\s+precision)?(?:\(\d+(?:,\s*\d+)?\))?)(.*)$", re.I)
_NUMERIC = re.compile(r"numeric\((\d+),\s*(\d+)\)", re.I)
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: PostgreSQL type -> (DuckDB type, BigQuery type); numeric(p,s) is handled apart.
_TYPES = {
    "bigserial": ("BIGINT", "INT64"),
    "bigint": ("BIGINT", "INT64"),
    "serial": ("INTEGER", "INT64"),
    "integer": ("INTEGER", "INT64"),
    "int": ("INTEGER", "INT64"),
    "smallint": ("SMALLINT", "INT64"),
    "text": ("VARCHAR", "STRING"),
    "varchar": ("VARCHAR", "STRING"),
    "uuid": ("VARCHAR", "STRING"),
    "jsonb": ("VARCHAR", "STRING"),
    "json": ("VARCHAR", "STRING"),
    "boolean": ("BOOLEAN", "BOOL"),
    "double precision": ("DOUBLE", "FLOAT64"),
    "real": ("DOUBLE", "FLOAT64"),
    "timestamptz": ("TIMESTAMPTZ", "TIMESTAMP"),
    "timestamp": ("TIMESTAMP", "DATETIME"),
    "date": ("DATE", "DATE"),
    "numeric": ("VARCHAR", "BIGNUMERIC"),  # unconstrained numeric: exact digits kept as text locally
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str  # lower case, e.g. "numeric(12,2)", "timestamptz"
    nullable: bool


@dataclass(frozen=True)
class SourceTable:
    """A captured PostgreSQL table: its columns in order and its primary key."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> Column | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def parse_schema_sql(sql: str) -> dict[str, SourceTable]:
    """The CREATE TABLE statements of ``sql`` (one column per line, as schema.sql keeps them)."""
    tables: dict[str, SourceTable] = {}
    for name, body in _CREATE.findall(sql):
        columns, key = [], []
        for raw in body.splitlines():
            line = raw.strip().rstrip(",")
            if not line or line.startswith("--"):
                continue
            if line.upper().startswith(("PRIMARY KEY", "UNIQUE", "CHECK", "CONSTRAINT", "FOREIGN KEY")):
                if line.upper().startswith("PRIMARY KEY"):
                    key += [k.strip() for k in line[line.index("(") + 1 : line.index(")")].split(",")]
                continue
            match = _COLUMN.match(line)
            if match is None:  # a continuation line of the previous column (a long CHECK)
                continue
            column, pg_type, rest = match.group(1), re.sub(r"\s+", " ", match.group(2).lower()), match.group(3).upper()
            primary = "PRIMARY KEY" in rest
            if pg_type.split("(")[0] not in _TYPES:
                raise ValueError(f"schema.sql: table {name}, column {column}: unsupported type {pg_type}")
            columns.append(Column(column, pg_type, nullable=not primary and "NOT NULL" not in rest))
            if primary:
                key.append(column)
        if not key:
            raise ValueError(f"schema.sql: table {name} has no primary key (CDC replicas are kept by key)")
        tables[name] = SourceTable(name, tuple(columns), tuple(key))
    if not tables:
        raise ValueError("schema.sql: no CREATE TABLE statements found")
    return tables


@lru_cache(maxsize=4)
def load_source_tables(path: str | None = None) -> dict[str, SourceTable]:
    """The tables of the packaged ``schema.sql`` (or of ``path``)."""
    return parse_schema_sql((Path(path) if path else cdc_file(SCHEMA)).read_text(encoding="utf-8"))


def duckdb_type(pg_type: str) -> str:
    numeric = _NUMERIC.fullmatch(pg_type)
    if numeric:
        return f"DECIMAL({numeric.group(1)},{numeric.group(2)})"
    return _TYPES[pg_type.split("(")[0]][0]


def bigquery_type(pg_type: str) -> str:
    numeric = _NUMERIC.fullmatch(pg_type)
    if numeric:
        precision, scale = int(numeric.group(1)), int(numeric.group(2))
        return "NUMERIC" if precision - scale <= 29 and scale <= 9 else "BIGNUMERIC"
    return _TYPES[pg_type.split("(")[0]][1]


def infer_type(value: Any) -> str:
    """The PostgreSQL-like type of a column the schema file does not list, from a JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    return "text"  # strings (also Debezium's decimal strings), and JSON documents kept as text


def typed_value(pg_type: str, value: Any) -> Any:
    """A Debezium JSON value of a column of ``pg_type`` as Python; ``ValueError`` if it is not one."""
    if value is None:
        return None
    base = pg_type.split("(")[0]
    if base in ("bigserial", "bigint", "serial", "integer", "int", "smallint"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if base == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if base in ("double precision", "real"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if base == "numeric":
        if not isinstance(value, str):
            raise ValueError(f"expected a decimal string (decimal.handling.mode=string), got {value!r}")
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"expected a decimal string, got {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"expected a finite decimal, got {value!r}")
        numeric = _NUMERIC.fullmatch(pg_type)
        return number if numeric is None else number.quantize(Decimal(1).scaleb(-int(numeric.group(2))))
    if base == "timestamptz":
        try:  # microseconds kept (the replica must equal the source)
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise ValueError(f"expected an ISO 8601 timestamp with an offset, got {value!r}")
        return parsed.astimezone(timezone.utc)
    if base == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected microseconds since the epoch, got {value!r}")
        return (_EPOCH + timedelta(microseconds=value)).replace(tzinfo=None)
    if base == "date":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected days since the epoch, got {value!r}")
        return _EPOCH_DATE + timedelta(days=value)
    if not isinstance(value, str):  # text-like; a json/jsonb document is a string in Debezium's JSON
        raise ValueError(f"expected a string, got {value!r}")
    return value


def typed_row(table: SourceTable, image: Mapping[str, Any]) -> dict[str, Any]:
    """A row image with every column typed (a column the schema file lacks: by ``infer_type``)."""
    row: dict[str, Any] = {}
    for name, value in image.items():
        column = table.column(name)
        pg_type = column.pg_type if column is not None else infer_type(value)
        try:
            row[name] = typed_value(pg_type, value)
        except ValueError as exc:
            raise ValueError(f"{table.name}.{name} ({pg_type}): {exc}") from None
    return row
