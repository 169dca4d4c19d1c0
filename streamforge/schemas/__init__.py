"""The event model: versioned Avro schemas, validation, codecs and BigQuery forms.

>>> from streamforge.schemas import get_schema
>>> clicks = get_schema("clickstream_event")          # latest version
>>> record = clicks.from_json(line)                   # validated, or InvalidEvent
>>> clicks.to_confluent(record)                       # Avro with the Confluent header
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from streamforge.schemas.errors import FieldError, InvalidEvent, SchemaDefinitionError, UnknownSchema
from streamforge.schemas.registry import EventSchema, SchemaRegistry

__all__ = [
    "EventSchema",
    "FieldError",
    "InvalidEvent",
    "SCHEMA_DIR",
    "SchemaDefinitionError",
    "SchemaRegistry",
    "UnknownSchema",
    "get_schema",
    "registry",
]

SCHEMA_DIR = Path(str(resources.files(__package__).joinpath("avro")))


@lru_cache(maxsize=1)
def registry() -> SchemaRegistry:
    """The schemas shipped with StreamForge."""
    return SchemaRegistry.from_directory(SCHEMA_DIR)


def get_schema(subject: str, version: int | None = None) -> EventSchema:
    return registry().get(subject, version)
