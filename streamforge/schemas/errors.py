"""Errors raised by the event model. Decoding never raises anything else on bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "FieldError", "InvalidEvent", "SchemaDefinitionError", "UnknownSchema", "show_value"]

_MAX_SHOWN = 80


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: The value reported for a required field that is absent.
MISSING = _Missing()


def show_value(value: Any) -> str:
    """A short, safe rendering of an offending value for error messages."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclass(frozen=True)
class FieldError:
    """What is wrong, where: ``path`` (e.g. ``items[2].quantity``), the value, and why."""

    path: str
    value: Any
    reason: str

    def __str__(self) -> str:
        where = self.path or "<message>"
        return f"{where}={show_value(self.value)}: {self.reason}"


class InvalidEvent(ValueError):
    """A message that does not decode or validate against its schema.

    ``errors`` lists every problem found (capped), each with path, value and reason;
    ``kind`` says which stage failed: ``invalid_json``, ``invalid_avro`` or ``invalid_event``.
    """

    def __init__(self, schema: str, errors: list[FieldError] | tuple[FieldError, ...], kind: str = "invalid_event"):
        self.schema = schema
        self.errors = tuple(errors)
        self.kind = kind
        super().__init__(f"{schema}: " + "; ".join(str(e) for e in self.errors))


class SchemaDefinitionError(ValueError):
    """An .avsc file itself is wrong (unsupported type, bad BigQuery declaration, ...)."""


class UnknownSchema(LookupError):
    """No schema with that subject, version or id."""
