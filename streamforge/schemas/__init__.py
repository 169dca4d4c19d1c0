"""The event model: versioned Avro schemas, validation, codecs and BigQuery forms.

>>> from streamforge.schemas import get_schema
>>> clicks = get_schema("clickstream_event")          # latest version
>>> record = clicks.from_json(line)                   # validated, or InvalidEvent
>>> clicks.to_confluent(record)                       # Avro with the Confluent header

The codecs (fastavro) load on first use, so the standard-library parts — the errors, the
cross-field rules, the .avsc files — also serve where fastavro is not installed (the
daily Spark batch on Dataproc Serverless).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamforge.schemas.errors import FieldError, InvalidEvent, SchemaDefinitionError, UnknownSchema

if TYPE_CHECKING:
    from streamforge.schemas.versioned import EventSchema, SchemaRegistry

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


def __getattr__(name: str) -> Any:
    if name in ("EventSchema", "SchemaRegistry"):
        from streamforge.schemas import versioned

        return getattr(versioned, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@lru_cache(maxsize=1)
def registry() -> SchemaRegistry:
    """The schemas shipped with StreamForge."""
    from streamforge.schemas.versioned import SchemaRegistry

    return SchemaRegistry.from_directory(SCHEMA_DIR)


def get_schema(subject: str, version: int | None = None) -> EventSchema:
    return registry().get(subject, version)
