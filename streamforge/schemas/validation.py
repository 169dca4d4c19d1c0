"""Validate and normalise records against an Avro schema definition.

A validator is compiled once per schema from the .avsc JSON into nested closures. It accepts
a record in its JSON form (RFC 3339 strings, numbers) or in its Python form (aware datetimes,
Decimals), and returns the Python form that fastavro writes. Besides Avro types it enforces
the constraint attributes the .avsc files carry on fields: ``minimum``, ``maximum``,
``minLength``, ``maxLength``, ``pattern``, ``minItems``, ``maxItems``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Mapping

from streamforge.schemas.errors import MISSING, FieldError, SchemaDefinitionError
from streamforge.timeutil import parse_timestamp

__all__ = ["Converter", "INVALID", "MAX_ERRORS", "compile_record"]

#: Returned by a converter for a value it rejected (the reason is in the error list).
INVALID: Any = object()
#: Validation stops collecting after this many problems in one message.
MAX_ERRORS = 20

Errors = list[FieldError]
Converter = Callable[[Any, str, Errors], Any]

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?")


def compile_record(definition: Mapping[str, Any]) -> Converter:
    """Compile the top-level record of an .avsc definition into a converter."""
    if definition.get("type") != "record":
        raise SchemaDefinitionError("a top-level schema must be a record")
    return _Compiler(definition.get("namespace", "")).compile(definition, {}, "")


class _Compiler:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self.named: dict[str, Converter] = {}

    def compile(self, avro_type: Any, constraints: Mapping[str, Any], namespace: str) -> Converter:
        if isinstance(avro_type, list):
            return self._union(avro_type, constraints, namespace)
        if isinstance(avro_type, str):
            if avro_type in _PRIMITIVES:
                return _not_null(_PRIMITIVES[avro_type](avro_type, constraints))
            full = avro_type if "." in avro_type else f"{namespace}.{avro_type}".lstrip(".")
            if full not in self.named:
                raise SchemaDefinitionError(f"unknown named type '{avro_type}'")
            return self.named[full]
        if not isinstance(avro_type, dict):
            raise SchemaDefinitionError(f"not an Avro type: {avro_type!r}")
        kind = avro_type.get("type")
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            return _not_null(_decimal(avro_type, constraints))
        if logical == "timestamp-millis":
            return _not_null(_timestamp_millis(constraints))
        if logical is not None:
            raise SchemaDefinitionError(f"logical type '{logical}' is not supported by the validator")
        if kind == "record":
            return self._record(avro_type, namespace)
        if kind == "enum":
            conv = _not_null(_enum(avro_type))
            self.named[_fullname(avro_type, namespace)] = conv
            return conv
        if kind == "array":
            items = self.compile(avro_type["items"], {}, namespace)
            return _not_null(_array(items, constraints))
        if kind == "map":
            values = self.compile(avro_type["values"], {}, namespace)
            return _not_null(_map(values))
        if kind in _PRIMITIVES:
            return _not_null(_PRIMITIVES[kind](kind, constraints))
        raise SchemaDefinitionError(f"Avro type '{kind}' is not supported by the validator")

    def _record(self, definition: Mapping[str, Any], namespace: str) -> Converter:
        full = _fullname(definition, namespace)
        inner_ns = full.rpartition(".")[0]
        fields = []
        for field in definition["fields"]:
            conv = self.compile(field["type"], field, inner_ns)
            has_default = "default" in field
            fields.append((field["name"], conv, has_default, field.get("default")))

        def convert_record(value: Any, path: str, errors: Errors) -> Any:
            if type(value) is not dict:
                errors.append(FieldError(path, value, "expected an object"))
                return INVALID
            out = {}
            prefix = f"{path}." if path else ""
            for name, conv, has_default, default in fields:
                if name in value:
                    out[name] = conv(value[name], prefix + name, errors)
                elif has_default:
                    out[name] = list(default) if isinstance(default, list) else default
                else:
                    errors.append(FieldError(prefix + name, MISSING, "missing required field"))
                if len(errors) >= MAX_ERRORS:
                    return INVALID
            return out

        conv = _not_null(convert_record)
        self.named[full] = conv
        return conv

    def _union(self, branches: list[Any], constraints: Mapping[str, Any], namespace: str) -> Converter:
        others = [b for b in branches if b != "null"]
        if len(others) != 1 or len(branches) != 2:
            raise SchemaDefinitionError(f"only [null, T] unions are supported, got {branches!r}")
        inner = self.compile(others[0], constraints, namespace)

        def convert_nullable(value: Any, path: str, errors: Errors) -> Any:
            return None if value is None else inner(value, path, errors)

        return convert_nullable


def _fullname(definition: Mapping[str, Any], namespace: str) -> str:
    name = definition["name"]
    if "." in name:
        return name
    ns = definition.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _not_null(conv: Converter) -> Converter:
    def convert_required(value: Any, path: str, errors: Errors) -> Any:
        if value is None:
            errors.append(FieldError(path, None, "must not be null"))
            return INVALID
        return conv(value, path, errors)

    return convert_required


def _bounds(constraints: Mapping[str, Any]) -> tuple[Any, Any]:
    return constraints.get("minimum"), constraints.get("maximum")


def _check_bounds(value: Any, low: Any, high: Any, path: str, errors: Errors) -> bool:
    if low is not None and value < low:
        errors.append(FieldError(path, value, f"must be >= {low}"))
        return False
    if high is not None and value > high:
        errors.append(FieldError(path, value, f"must be <= {high}"))
        return False
    return True


def _string(_kind: str, constraints: Mapping[str, Any]) -> Converter:
    min_len = constraints.get("minLength")
    max_len = constraints.get("maxLength")
    pattern = re.compile(constraints["pattern"]) if "pattern" in constraints else None

    def convert_string(value: Any, path: str, errors: Errors) -> Any:
        if type(value) is not str:
            if not isinstance(value, str):
                errors.append(FieldError(path, value, "expected a string"))
                return INVALID
            value = str.__str__(value)  # a str subclass (e.g. a StrEnum member) as a plain str
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                errors.append(FieldError(path, value, "not valid Unicode (lone surrogate)"))
                return INVALID
        if min_len is not None and len(value) < min_len:
            errors.append(FieldError(path, value, f"shorter than {min_len} characters"))
            return INVALID
        if max_len is not None and len(value) > max_len:
            errors.append(FieldError(path, value, f"longer than {max_len} characters"))
            return INVALID
        if pattern is not None and pattern.search(value) is None:
            errors.append(FieldError(path, value, f"does not match {pattern.pattern}"))
            return INVALID
        return value

    return convert_string


def _integer(kind: str, constraints: Mapping[str, Any]) -> Converter:
    type_low, type_high = _INT_RANGE[kind]
    low, high = _bounds(constraints)

    def convert_integer(value: Any, path: str, errors: Errors) -> Any:
        if type(value) is not int:
            errors.append(FieldError(path, value, "expected an integer"))
            return INVALID
        if not type_low <= value <= type_high:
            errors.append(FieldError(path, value, f"out of range for Avro {kind}"))
            return INVALID
        return value if _check_bounds(value, low, high, path, errors) else INVALID

    return convert_integer


def _floating(_kind: str, constraints: Mapping[str, Any]) -> Converter:
    low, high = _bounds(constraints)

    def convert_float(value: Any, path: str, errors: Errors) -> Any:
        if type(value) not in (float, int):
            errors.append(FieldError(path, value, "expected a number"))
            return INVALID
        value = float(value)
        if not math.isfinite(value):
            errors.append(FieldError(path, value, "must be a finite number"))
            return INVALID
        return value if _check_bounds(value, low, high, path, errors) else INVALID

    return convert_float


def _boolean(_kind: str, _constraints: Mapping[str, Any]) -> Converter:
    def convert_boolean(value: Any, path: str, errors: Errors) -> Any:
        if type(value) is not bool:
            errors.append(FieldError(path, value, "expected true or false"))
            return INVALID
        return value

    return convert_boolean


def _bytes(_kind: str, _constraints: Mapping[str, Any]) -> Converter:
    def convert_bytes(value: Any, path: str, errors: Errors) -> Any:
        if type(value) not in (bytes, bytearray):
            errors.append(FieldError(path, value, "expected bytes"))
            return INVALID
        return bytes(value)

    return convert_bytes


def _null(_kind: str, _constraints: Mapping[str, Any]) -> Converter:  # pragma: no cover - unused by our schemas
    raise SchemaDefinitionError("a plain 'null' field type is not supported")


_PRIMITIVES: dict[str, Callable[[str, Mapping[str, Any]], Converter]] = {
    "string": _string,
    "int": _integer,
    "long": _integer,
    "float": _floating,
    "double": _floating,
    "boolean": _boolean,
    "bytes": _bytes,
    "null": _null,
}


def _enum(definition: Mapping[str, Any]) -> Converter:
    symbols = frozenset(definition["symbols"])
    listing = ", ".join(definition["symbols"])

    def convert_enum(value: Any, path: str, errors: Errors) -> Any:
        if not isinstance(value, str) or value not in symbols:
            errors.append(FieldError(path, value, f"not one of {listing}"))
            return INVALID
        return value if type(value) is str else str.__str__(value)

    return convert_enum


def _array(items: Converter, constraints: Mapping[str, Any]) -> Converter:
    min_items = constraints.get("minItems")
    max_items = constraints.get("maxItems")

    def convert_array(value: Any, path: str, errors: Errors) -> Any:
        if type(value) not in (list, tuple):
            errors.append(FieldError(path, value, "expected an array"))
            return INVALID
        if min_items is not None and len(value) < min_items:
            errors.append(FieldError(path, f"<{len(value)} items>", f"needs at least {min_items} item(s)"))
            return INVALID
        if max_items is not None and len(value) > max_items:
            errors.append(FieldError(path, f"<{len(value)} items>", f"allows at most {max_items} items"))
            return INVALID
        out = []
        for i, item in enumerate(value):
            out.append(items(item, f"{path}[{i}]", errors))
            if len(errors) >= MAX_ERRORS:
                return INVALID
        return out

    return convert_array


def _map(values: Converter) -> Converter:
    def convert_map(value: Any, path: str, errors: Errors) -> Any:
        if type(value) is not dict:
            errors.append(FieldError(path, value, "expected an object"))
            return INVALID
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                errors.append(FieldError(path, key, "map keys must be strings"))
                return INVALID
            out[key] = values(item, f"{path}[{key!r}]", errors)
        return out

    return convert_map


def _decimal(definition: Mapping[str, Any], constraints: Mapping[str, Any]) -> Converter:
    scale = int(definition.get("scale", 0))
    precision = int(definition["precision"])
    if not 0 <= scale <= precision:
        raise SchemaDefinitionError(f"decimal scale {scale} must be within 0..precision {precision}")
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)
    low, high = _bounds(constraints)

    def convert_decimal(value: Any, path: str, errors: Errors) -> Any:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                errors.append(FieldError(path, value, "must be a finite number"))
                return INVALID
            number = Decimal(repr(value))
        elif kind is int:
            number = Decimal(value)
        elif kind is str:
            if _DECIMAL_TEXT.fullmatch(value) is None:
                errors.append(FieldError(path, value, "not a decimal number"))
                return INVALID
            number = Decimal(value)
        elif kind is Decimal:
            number = value
            if not number.is_finite():
                errors.append(FieldError(path, value, "must be a finite number"))
                return INVALID
        else:
            errors.append(FieldError(path, value, "expected a number"))
            return INVALID
        if not -limit < number < limit:
            errors.append(FieldError(path, value, f"out of range for decimal({precision},{scale})"))
            return INVALID
        rounded = number.quantize(quantum)
        if rounded != number:
            errors.append(FieldError(path, value, f"has more than {scale} decimal places"))
            return INVALID
        return rounded if _check_bounds(rounded, low, high, path, errors) else INVALID

    return convert_decimal


def _timestamp_millis(_constraints: Mapping[str, Any]) -> Converter:
    def convert_timestamp(value: Any, path: str, errors: Errors) -> Any:
        if type(value) is str:
            try:
                return parse_timestamp(value)
            except ValueError as exc:
                errors.append(FieldError(path, value, str(exc)))
                return INVALID
        if isinstance(value, datetime):
            if value.tzinfo is None:
                errors.append(FieldError(path, value, "datetime must be timezone-aware"))
                return INVALID
            try:
                value = value.astimezone(timezone.utc)
            except (OverflowError, ValueError) as exc:
                errors.append(FieldError(path, value, f"not representable in UTC: {exc}"))
                return INVALID
            return value.replace(microsecond=value.microsecond // 1000 * 1000)
        errors.append(FieldError(path, value, "expected an RFC 3339 timestamp string"))
        return INVALID

    return convert_timestamp
