"""Which input rows the batch may use: the event schemas' checks, as Spark expressions.

The streaming pipelines validate every message with the Python validator of
``streamforge.schemas``; a Spark job over millions of rows cannot call it row by row in
time, so the same checks are built here as column expressions:

- from the ``.avsc`` definitions, generically: required fields, types (a value of the wrong
  type makes the JSON reader set ``_corrupt``), enum symbols, ``minimum``/``maximum``,
  ``minLength``/``maxLength``/``pattern``, ``minItems``/``maxItems``, a decimal's places and
  range, the RFC 3339 form of timestamps;
- the cross-field rules of ``streamforge/schemas/rules.py``: the fields each clickstream
  event type needs (the same table, imported), an order's amounts adding up, card payments
  carrying a fingerprint, no hidden characters in text and regions, categories and
  currencies from ``streamforge/vocabulary.py`` (the same lists and pattern, imported);
- the pipelines' clock checks: an event_time further ahead than ``max_clock_skew`` is
  refused, and one before ``min_event_time`` (the batch reads files and tables, which carry no
  receipt time, so the pipelines' max_event_age does not apply to them either).

``tests/batch/test_validation.py`` holds this to the Python validator on every kind of
malformed message the simulator makes. A row that fails is kept with the first reason found
and its original payload; the valid ones are converted to the typed schema (the job then
keeps one per event_id, as the pipelines do: batch/metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.schemas import CORRUPT, Field, fields, json_schema, typed_schema
from streamforge.schemas.rules import CLICKSTREAM_REQUIRED
from streamforge.vocabulary import CATEGORIES, CURRENCIES, HIDDEN_CHARACTERS, REGION_CODES

__all__ = ["PAYLOAD", "REASON", "Checked", "check_json_lines", "check_typed", "payload_encoding", "payload_text"]

REASON, PAYLOAD = "_reason", "_payload"
_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_EXACT = T.DecimalType(38, 18)
_MONEY_SUM = T.DecimalType(38, 2)


@dataclass
class Checked:
    """One stream's rows with the first failed check in ``_reason`` (null when valid)."""

    stream: str
    rows: DataFrame  # the schema's typed columns, REASON, and whatever ``payload`` needs
    payload: Column  # the row as read: the JSON line, or the row as JSON

    @property
    def names(self) -> list[str]:
        return [f.name for f in fields(self.stream)]

    @property
    def candidates(self) -> DataFrame:
        """Every valid row, duplicates included."""
        return self.rows.where(F.col(REASON).isNull()).select(*self.names)

    @property
    def rejected(self) -> DataFrame:
        """(event_time when readable, event_id, reason, payload) of the rows that failed a check."""
        return self.rows.where(F.col(REASON).isNotNull()).select(
            "event_time",
            F.col("event_id").cast("string").alias("event_id"),
            F.col(REASON).alias("reason"),
            payload_text(self.payload).alias("payload"),
            payload_encoding(self.payload).alias("payload_encoding"),
        )

    def marked(self) -> DataFrame:
        """Every row: its columns, REASON, and PAYLOAD (the payload of a rejected row; null for
        the valid ones, so that keeping the rows costs little more than keeping the valid ones)."""
        payload = F.when(F.col(REASON).isNotNull(), self.payload)
        return self.rows.select(*self.names, REASON, payload.alias(PAYLOAD))

    def where(self, condition: Column) -> Checked:
        return Checked(self.stream, self.rows.where(condition), self.payload)


# -- field checks from the Avro definition --------------------------------------------------


def _value_problems(value: Column, field: Field, path: str, raw: bool) -> list[tuple[Column, str]]:
    """(is bad, reason) for a present value; ``raw``: decimals and timestamps are still JSON text."""
    limits = field.constraints
    kind = field.kind
    problems: list[tuple[Column, str]] = []
    if kind == "string":
        if "minLength" in limits:
            problems.append(
                (_shorter(value, limits["minLength"]), f"{path}: shorter than {limits['minLength']} characters")
            )
        if "maxLength" in limits:
            problems.append(
                (_longer(value, limits["maxLength"]), f"{path}: longer than {limits['maxLength']} characters")
            )
        if "pattern" in limits:
            problems.append((~value.rlike(limits["pattern"]), f"{path}: does not match {limits['pattern']}"))
    elif kind == "enum":
        symbols = field.avro["symbols"]
        problems.append((~value.isin(symbols), f"{path}: not one of {', '.join(symbols)}"))
    elif kind == "decimal":
        precision, scale = field.avro["precision"], field.avro.get("scale", 0)
        if raw:
            exact = value.try_cast(_EXACT)
            problems += [
                (value.isNotNull() & exact.isNull(), f"{path}: not a decimal number"),
                (exact != F.round(exact, scale), f"{path}: has more than {scale} decimal places"),
                (
                    F.abs(exact) >= F.lit(Decimal(10) ** (precision - scale)),
                    f"{path}: out of range for decimal({precision},{scale})",
                ),
            ]
            value = exact
        problems += _bounds(value, limits, path)
    elif kind in ("int", "long", "double", "float"):
        problems += _bounds(value, limits, path)
    elif kind == "timestamp" and raw:
        problems += [
            (~value.rlike(_RFC3339), f"{path}: not an RFC 3339 timestamp such as 2026-11-01T08:00:00.000Z"),
            (value.isNotNull() & F.try_to_timestamp(F.upper(value)).isNull(), f"{path}: not a valid date/time"),
        ]
    elif kind == "array":
        count = F.size(value)
        if "minItems" in limits:
            problems.append((count < limits["minItems"], f"{path}: fewer than {limits['minItems']} items"))
        if "maxItems" in limits:
            problems.append((count > limits["maxItems"], f"{path}: more than {limits['maxItems']} items"))
        for child in field.children():
            where = f"{path}[].{child.name}"
            if not child.nullable:
                problems.append((F.exists(value, _item_check(child, where, raw, None)), f"{where}: required"))
            for k, (_, reason) in enumerate(_value_problems(F.lit(None), child, where, raw)):
                problems.append((F.exists(value, _item_check(child, where, raw, k)), reason))
    return problems


def _shorter(value: Column, least: int) -> Column:
    """Fewer than ``least`` characters. The byte length is known without reading the string,
    and a string has at most as many characters as bytes: counting is needed only near the limit."""
    if least <= 1:
        return F.octet_length(value) < least
    return F.when(F.octet_length(value) < least, F.lit(True)).otherwise(F.length(value) < least)


def _longer(value: Column, most: int) -> Column:
    """More than ``most`` characters (counted only for strings of more than ``most`` bytes)."""
    return F.when(F.octet_length(value) <= most, F.lit(False)).otherwise(F.length(value) > most)


def _item_check(child: Field, where: str, raw: bool, k: int | None):
    """The lambda Spark's exists() applies to each array item: is ``child`` missing (k None), or
    does it fail its k-th check. (A factory, because PySpark reads a lambda's arity from its
    signature, so captured values cannot be default arguments.)"""
    if k is None:
        return lambda item: item[child.name].isNull()
    return lambda item: _value_problems(item[child.name], child, where, raw)[k][0]


def _bounds(value: Column, limits: dict, path: str) -> list[tuple[Column, str]]:
    out = []
    if "minimum" in limits:
        out.append((value < F.lit(limits["minimum"]), f"{path}: must be >= {limits['minimum']}"))
    if "maximum" in limits:
        out.append((value > F.lit(limits["maximum"]), f"{path}: must be <= {limits['maximum']}"))
    return out


def _field_checks(stream: str, raw: bool) -> tuple[list[Column], list[tuple[Column, str]]]:
    """(quick, detailed): ``quick`` is true for a row with any problem, at the cost of one pass
    over each array (Spark evaluates lambdas without code generation, so a dozen exists() per
    row would dominate the job); ``detailed`` names the first problem, for the failing rows."""
    quick: list[Column] = []
    detailed: list[tuple[Column, str]] = []
    for field in fields(stream):
        column = F.col(field.name)
        checks = ([(column.isNull(), f"{field.name}: required")] if not field.nullable else []) + _value_problems(
            column, field, field.name, raw
        )
        detailed += checks
        if field.kind == "array":
            quick.append(column.isNull() if not field.nullable else F.lit(False))
            quick += [bad for bad, reason in checks if "[]." not in reason]  # the array's own checks
            quick.append(F.exists(column, _any_item_problem(field, raw)))
        else:
            quick += [bad for bad, _ in checks]
    return quick, detailed


def _any_item_problem(field: Field, raw: bool):
    """exists()'s lambda: does an item of the array ``field`` fail any of its checks."""

    def bad(item: Column) -> Column:
        conditions = []
        for child in field.children():
            if not child.nullable:
                conditions.append(item[child.name].isNull())
            conditions += [check for check, _ in _value_problems(item[child.name], child, "", raw)]
        return _any(conditions)

    return bad


def _any(conditions: list[Column]) -> Column:
    """OR of the conditions, where a null (an absent value) counts as false."""
    combined = F.lit(False)
    for condition in conditions:
        combined = combined | F.coalesce(condition, F.lit(False))
    return combined


def _reason(quick: list[Column], detailed: list[tuple[Column, str]]) -> Column:
    return F.when(_any(quick), _first_reason(detailed))


# -- conversion to the typed schema ------------------------------------------------------------


def _typed(column: Column, field: Field) -> Column:
    kind = field.kind
    if kind == "decimal":
        return column.try_cast(T.DecimalType(field.avro["precision"], field.avro.get("scale", 0)))
    if kind == "timestamp":  # milliseconds, as the Python validator keeps them
        return F.timestamp_millis(F.unix_millis(F.try_to_timestamp(F.upper(column))))
    if kind == "array" and any(c.kind in ("decimal", "timestamp") for c in field.children()):
        children = field.children()
        return F.transform(column, lambda item: F.struct(*[_typed(item[c.name], c).alias(c.name) for c in children]))
    return column


# -- cross-field rules (streamforge/schemas/rules.py) -----------------------------------------------


def _hidden_in(name: str):
    """An array item's test for F.exists (a one-argument function, as Spark requires)."""
    return lambda item: item[name].rlike(HIDDEN_CHARACTERS)


#: Anything but printable ASCII: one range, tested much faster than HIDDEN_CHARACTERS's eight,
#: which then runs only on text that holds such a character.
_NOT_PRINTABLE_ASCII = r"[^\x20-\x7e]"


def _hidden_characters(stream: str) -> tuple[Column, Column]:
    """No hidden characters in any text field (nested ones too): one regex over all of a row's
    text, and the field named only for a row it matched, because a regex per field per row
    slowed the daily job by nearly half (README, "Daily batch"). The pattern is one character,
    so no match spans the separator."""
    texts, per_field = [], []
    for field in fields(stream):
        if field.kind == "string":
            texts.append(F.col(field.name))
            per_field.append(
                (
                    F.col(field.name).rlike(HIDDEN_CHARACTERS),
                    f"{field.name}: contains a control, bidi or zero-width character",
                )
            )
        elif field.kind == "array":
            for child in field.children():
                if child.kind == "string":
                    texts.append(F.col(field.name)[child.name])  # the array of the items' values
                    per_field.append(
                        (
                            F.exists(field.name, _hidden_in(child.name)),
                            f"{field.name}[].{child.name}: contains a control, bidi or zero-width character",
                        )
                    )
    text = F.concat_ws(" ", *texts)
    return text.rlike(_NOT_PRINTABLE_ASCII) & text.rlike(HIDDEN_CHARACTERS), _first_reason(per_field)


def _content(stream: str) -> list[tuple[Column, str | Column]]:
    """No hidden characters in any text field, and known vocabulary."""
    checks: list[tuple[Column, str | Column]] = [_hidden_characters(stream)]
    regions, categories = sorted(REGION_CODES), list(CATEGORIES)
    if stream == "clickstream":
        return checks + [
            (~F.col("geo_region").isin(regions), "geo_region: not a known region"),
            (F.col("category").isNotNull() & ~F.col("category").isin(categories), "category: not a known category"),
        ]
    return checks + [
        (~F.col("shipping_region").isin(regions), "shipping_region: not a known region"),
        (~F.col("currency").isin(sorted(CURRENCIES)), "currency: not a known ISO 4217 currency"),
        (F.exists("items", lambda item: ~item["category"].isin(categories)), "items[].category: not a known category"),
    ]


def _rules(stream: str) -> list[tuple[Column, str | Column]]:
    if stream == "clickstream":
        return [
            (
                (F.col("event_type") == event_type) & F.col(name).isNull(),
                f"{name}: required for event_type {event_type}",
            )
            for event_type, names in CLICKSTREAM_REQUIRED.items()
            for name in names
        ] + _content(stream)
    lines = F.aggregate(
        "items",
        F.lit(0).cast(_MONEY_SUM),
        lambda total, item: (total + item["unit_price"] * item["quantity"]).cast(_MONEY_SUM),
    )
    subtotal, discount, shipping = F.col("subtotal"), F.col("discount"), F.col("shipping")
    return [
        (subtotal != lines, "subtotal: must equal the sum of the item lines"),
        (discount > subtotal, "discount: must not exceed the subtotal"),
        (
            F.col("total_amount") != subtotal - discount + shipping,
            "total_amount: must equal subtotal - discount + shipping",
        ),
        (
            (F.col("payment_method") == "card") & F.col("card_fingerprint").isNull(),
            "card_fingerprint: required when payment_method is card",
        ),
    ] + _content(stream)


def _first_reason(checks: list[tuple[Column, str | Column]]) -> Column:
    return F.coalesce(
        *[F.when(bad, reason if isinstance(reason, Column) else F.lit(reason)) for bad, reason in checks],
        F.lit(None).cast("string"),
    )


def _finish(
    stream: str,
    rows: DataFrame,
    payload: Column,
    now: datetime,
    max_clock_skew: timedelta,
    min_event_time: datetime | None,
) -> Checked:
    """``rows``: typed columns and REASON (the field checks). Adds the rules and the clock."""
    horizon = F.lit(now + max_clock_skew).cast(T.TimestampType())
    later = _rules(stream) + [
        (F.col("event_time") > horizon, f"event_time: more than {max_clock_skew} ahead of the clock (future)")
    ]
    if min_event_time is not None:
        later.append(
            (
                F.col("event_time") < F.lit(min_event_time).cast(T.TimestampType()),
                f"event_time: before min_event_time {min_event_time:%Y-%m-%dT%H:%M:%SZ} (too_old)",
            )
        )
    return Checked(stream, rows.withColumn(REASON, F.coalesce(F.col(REASON), _first_reason(later))), payload)


def check_json_lines(
    stream: str, lines: DataFrame, now: datetime, max_clock_skew: timedelta, min_event_time: datetime | None = None
) -> Checked:
    """``lines``: one JSON message per row in column ``value`` (as spark.read.text gives them)."""
    parsed = lines.select(
        F.col("value").alias(PAYLOAD),
        F.from_json("value", json_schema(stream), {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}).alias(
            "e"
        ),
    )
    flat = parsed.select(PAYLOAD, "e.*")
    framing = [
        (F.trim(F.col(PAYLOAD)) == "", "invalid JSON: an empty line"),
        (F.col(CORRUPT).isNotNull(), "invalid JSON, not an object, or a value of the wrong type"),
        (~F.is_valid_utf8(F.col(PAYLOAD)), "invalid JSON: not valid UTF-8"),
    ]
    quick, detailed = _field_checks(stream, raw=True)
    checked = flat.withColumn(REASON, _reason([bad for bad, _ in framing] + quick, framing + detailed))
    typed = checked.select(*[_typed(F.col(f.name), f).alias(f.name) for f in fields(stream)], REASON, PAYLOAD)
    return _finish(stream, typed, F.col(PAYLOAD), now, max_clock_skew, min_event_time)


def payload_encoding(payload: Column) -> Column:
    """utf8, or base64 for bytes that are not UTF-8 text (as dead_letter keeps them)."""
    return F.when(F.is_valid_utf8(payload), F.lit("utf8")).otherwise(F.lit("base64"))


def payload_text(payload: Column) -> Column:
    return F.when(F.is_valid_utf8(payload), payload).otherwise(F.base64(payload.cast("binary")))


def check_typed(
    stream: str, table: DataFrame, now: datetime, max_clock_skew: timedelta, min_event_time: datetime | None = None
) -> Checked:
    """``table``: rows with the schema's columns (Parquet, a warehouse table): cast, then checked."""
    schema = typed_schema(stream)
    missing = [f.name for f in schema.fields if f.name not in table.columns]
    if missing:
        raise ValueError(f"{stream} input has no column {', '.join(missing)} (columns: {', '.join(table.columns)})")
    cast = table.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
    checked = cast.withColumn(REASON, _reason(*_field_checks(stream, raw=False)))
    payload = F.to_json(F.struct(*[F.col(f.name) for f in schema.fields]))  # built for rejected rows only
    return _finish(stream, checked, payload, now, max_clock_skew, min_event_time)
