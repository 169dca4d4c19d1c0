"""A fast path for validating the common, valid record: straight-line code generated from the schema.

The converters in ``validation.py`` are the reference: they accept a record in JSON or
Python form, and report every problem precisely. They are nested closures, one or two
calls per field, about 17 us for a clickstream event, which is most of what a pipeline
spends per event. ``compile_fast_record`` turns the same .avsc definition into one Python
function per record type (generated source, compiled once, like ``dataclasses`` does) that
checks a JSON-form record with inline tests and no error bookkeeping:

- when every field is plainly valid (ASCII text within its bounds, a canonical
  ``2026-11-01T08:00:00.123Z`` timestamp, a number in range, a known enum symbol...), it
  returns exactly what the converters would return;
- anything else, invalid or merely unusual (non-ASCII text, a timestamp with an offset, a
  ``datetime`` object), returns ``None`` and the caller runs the converters, which accept it
  or say precisely what is wrong.

So the fast path can make validation faster but never changes its result; a property test
(tests/schemas/test_fastpath.py) holds it to that.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Callable, Mapping

from streamforge.schemas.errors import SchemaDefinitionError
from streamforge.schemas.validation import _INT_RANGE, INVALID, Converter, _decimal, _fullname

__all__ = ["FastRecord", "compile_fast_record"]

FastRecord = Callable[[Any], "dict[str, Any] | None"]

_MISSING = object()
_CANONICAL_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def compile_fast_record(definition: Mapping[str, Any]) -> FastRecord:
    """The fast path for the top-level record of ``definition``: record or None (see module doc)."""
    if definition.get("type") != "record":
        raise SchemaDefinitionError("a top-level schema must be a record")
    generator = _Generator()
    entry = generator.record(definition, "")
    namespace = dict(generator.env)
    exec(compile("\n".join(generator.lines), f"<fast path for {definition.get('name')}>", "exec"), namespace)  # noqa: S102
    return namespace[entry]


def _timestamp(value: str) -> datetime | None:
    """A canonical RFC 3339 UTC timestamp with milliseconds, or None (the converter decides)."""
    if len(value) != 24 or _CANONICAL_TIMESTAMP.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)  # 'Z' gives timezone.utc, as the converter does
    except ValueError:
        return None


def _through(converter: Converter) -> Callable[[Any], Any]:
    """The reference converter as a fast-path helper: its result, or None when it found a problem."""

    def convert(value: Any) -> Any:
        errors: list[Any] = []
        result = converter(value, "", errors)
        return None if errors or result is INVALID else result

    return convert


class _DecimalCache:
    """The decimal converter (the reference), remembering its result per float.

    Prices repeat (a catalogue, a few shipping fees: a million simulated orders hold 26,000
    distinct amounts), and turning a float into an exact Decimal costs about 1.5 us. Floats
    are the keys: no two distinct non-zero floats are equal. Zero is not a key (0.0 == -0.0,
    which convert to different Decimals); the converter's answers for both are kept aside.
    Decimals are immutable, so sharing a result is safe. The generated code looks floats up
    in ``hits`` itself and calls ``convert`` on a miss; the cache is emptied when full.
    """

    def __init__(self, converter: Converter, size: int = 1 << 16):
        self.hits: dict[float, Any] = {}
        self.through, self.size = _through(converter), size
        self.zeros = {1.0: self.through(0.0), -1.0: self.through(-0.0)}

    def convert(self, value: Any) -> Any:
        if type(value) is float and value == 0.0:
            return self.zeros[math.copysign(1.0, value)]
        result = self.through(value)
        if result is not None and type(value) is float and value:
            if len(self.hits) >= self.size:
                self.hits.clear()
            self.hits[value] = result
        return result


class _Generator:
    """Emits one ``def`` per record type into ``lines``; constants go to ``env``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "_MISSING": _MISSING,
            "_INF": math.inf,
            "_never": lambda _v: None,
            "_timestamp_text": lambda v: _timestamp(v) if type(v) is str else None,
        }
        self.named: dict[str, tuple[str, Any]] = {}  # full name -> ("record", function) or ("enum", symbols)
        self.decimals: dict[tuple[Any, ...], tuple[str, str]] = {}
        self.count = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"_{prefix}{self.count}"

    def constant(self, prefix: str, value: Any) -> str:
        name = self.fresh(prefix)
        self.env[name] = value
        return name

    # -- records ------------------------------------------------------------------------

    def record(self, definition: Mapping[str, Any], namespace: str) -> str:
        full = _fullname(definition, namespace)
        function = self.fresh("record_")
        self.named[full] = ("record", function)
        inner_ns = full.rpartition(".")[0]
        body = ["if type(value) is not dict:", "    return None", "get = value.get", "out = {}"]
        for field in definition["fields"]:
            name = field["name"]
            body.append(f"v = get({name!r}, _MISSING)")
            body.append("if v is _MISSING:")
            if "default" in field:
                default = field["default"]
                copy = f"list({self.constant('default_', default)})" if isinstance(default, list) else repr(default)
                body.append(f"    out[{name!r}] = {copy}")
            else:
                body.append("    return None")
            body.append("else:")
            body += ["    " + line for line in self.value(field["type"], field, inner_ns, f"out[{name!r}] = {{}}")]
        body.append("return out")
        self.lines.append(f"def {function}(value):")
        self.lines += ["    " + line for line in body]
        return function

    # -- values -------------------------------------------------------------------------

    def value(self, avro_type: Any, constraints: Mapping[str, Any], namespace: str, assign: str) -> list[str]:
        """Lines that check ``v`` and run ``assign.format(result)``, or ``return None``."""
        if isinstance(avro_type, list):
            others = [b for b in avro_type if b != "null"]
            if len(others) != 1 or len(avro_type) != 2:
                raise SchemaDefinitionError(f"only [null, T] unions are supported, got {avro_type!r}")
            inner = self.value(others[0], constraints, namespace, assign)
            return ["if v is None:", "    " + assign.format("None"), "else:", *("    " + line for line in inner)]
        if isinstance(avro_type, dict) and avro_type.get("logicalType") == "decimal":
            hits, convert = self.decimal(avro_type, constraints)
            return [
                f"x = {hits}.get(v) if type(v) is float else None",
                "if x is None:",
                f"    x = {convert}(v)",
                "    if x is None:",
                "        return None",
                assign.format("x"),
            ]
        check = self.inline(avro_type, constraints, namespace)
        if check is not None:
            return [f"if not ({check}):", "    return None", assign.format("v")]
        helper = self.helper(avro_type, constraints, namespace)
        return [f"x = {helper}(v)", "if x is None:", "    return None", assign.format("x")]

    def inline(self, avro_type: Any, constraints: Mapping[str, Any], namespace: str) -> str | None:
        """A condition on ``v`` under which ``v`` itself is the converted value, if the type has one."""
        if isinstance(avro_type, dict) and "logicalType" not in avro_type and avro_type.get("type") in _INLINE:
            avro_type = avro_type["type"]
        if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
            symbols = self.constant("symbols_", frozenset(avro_type["symbols"]))
            self.named[_fullname(avro_type, namespace)] = ("enum", symbols)
            return f"type(v) is str and v in {symbols}"
        if not isinstance(avro_type, str):
            return None
        if avro_type in _INLINE:
            return _INLINE[avro_type](self, avro_type, constraints)
        kind, target = self.resolve(avro_type, namespace)
        return f"type(v) is str and v in {target}" if kind == "enum" else None

    def helper(self, avro_type: Any, constraints: Mapping[str, Any], namespace: str) -> str:
        """The name of a function ``v -> converted value or None`` for a type checked out of line."""
        if isinstance(avro_type, str):
            kind, target = self.resolve(avro_type, namespace)
            return target if kind == "record" else "_never"
        logical = avro_type.get("logicalType")
        if logical == "timestamp-millis":
            return "_timestamp_text"
        if avro_type.get("type") == "record":
            return self.record(avro_type, namespace)
        if avro_type.get("type") == "array":
            return self._array(avro_type, constraints, namespace)
        return "_never"  # maps, bytes: always the converters

    def decimal(self, avro_type: Mapping[str, Any], constraints: Mapping[str, Any]) -> tuple[str, str]:
        """Names of the hit table and the converter of a decimal type, shared by the fields
        of the same type and bounds (an order's subtotal and total often coincide)."""
        key = (
            avro_type["precision"],
            avro_type.get("scale", 0),
            constraints.get("minimum"),
            constraints.get("maximum"),
        )
        if key not in self.decimals:
            cache = _DecimalCache(_decimal(avro_type, constraints))
            self.decimals[key] = (self.constant("decimal_hits_", cache.hits), self.constant("decimal_", cache.convert))
        return self.decimals[key]

    def resolve(self, name: str, namespace: str) -> tuple[str, str]:
        """("record", function) or ("enum", symbols) of a named type; ("", "") when unknown here."""
        full = name if "." in name else f"{namespace}.{name}".lstrip(".")
        return self.named.get(full, ("", ""))

    def _array(self, avro_type: Mapping[str, Any], constraints: Mapping[str, Any], namespace: str) -> str:
        function = self.fresh("array_")
        low, high = constraints.get("minItems"), constraints.get("maxItems")
        size = " and ".join(
            filter(
                None,
                (
                    f"len(value) >= {low!r}" if low is not None else "",
                    f"len(value) <= {high!r}" if high is not None else "",
                ),
            )
        )
        item_lines = self.value(avro_type["items"], {}, namespace, "out.append({})")
        lines = [
            f"def {function}(value):",
            "    if type(value) is not list and type(value) is not tuple:",
            "        return None",
        ]
        if size:
            lines += [f"    if not ({size}):", "        return None"]
        lines += ["    out = []", "    for v in value:", *("        " + line for line in item_lines), "    return out"]
        self.lines += lines
        return function


def _string(generator: _Generator, _kind: str, constraints: Mapping[str, Any]) -> str:
    parts = ["type(v) is str", "v.isascii()"]
    if constraints.get("minLength") is not None:
        parts.append(f"len(v) >= {constraints['minLength']!r}")
    if constraints.get("maxLength") is not None:
        parts.append(f"len(v) <= {constraints['maxLength']!r}")
    if "pattern" in constraints:
        pattern = generator.constant("pattern_", re.compile(constraints["pattern"]))
        parts.append(f"{pattern}.search(v) is not None")
    return " and ".join(parts)


def _bounds(constraints: Mapping[str, Any]) -> list[str]:
    parts = []
    if constraints.get("minimum") is not None:
        parts.append(f"v >= {constraints['minimum']!r}")
    if constraints.get("maximum") is not None:
        parts.append(f"v <= {constraints['maximum']!r}")
    return parts


def _integer(_generator: _Generator, kind: str, constraints: Mapping[str, Any]) -> str:
    low, high = _INT_RANGE[kind]
    return " and ".join(["type(v) is int", f"{low} <= v <= {high}", *_bounds(constraints)])


def _floating(_generator: _Generator, _kind: str, constraints: Mapping[str, Any]) -> str:
    return " and ".join(["type(v) is float", "-_INF < v < _INF", *_bounds(constraints)])


def _boolean(_generator: _Generator, _kind: str, _constraints: Mapping[str, Any]) -> str:
    return "type(v) is bool"


_INLINE: dict[str, Callable[[_Generator, str, Mapping[str, Any]], str]] = {
    "string": _string,
    "int": _integer,
    "long": _integer,
    "float": _floating,
    "double": _floating,
    "boolean": _boolean,
}
