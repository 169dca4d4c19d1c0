"""Versioned event schemas and their encodings: JSON, Avro binary, Confluent wire format.

Schemas live in ``avro/<subject>.v<N>.avsc``. Published versions are immutable (their
fingerprints are recorded in ``avro/published.json``); a change is a new version that must
stay FULL_TRANSITIVE compatible with the others (see ``compatibility``).

Decoding functions accept any bytes and either return a validated record or raise
``InvalidEvent`` naming the field, the value and the reason; nothing else escapes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import fastavro
import orjson

from streamforge.schemas.bigquery import BigQueryTable, bigquery_table
from streamforge.schemas.errors import FieldError, InvalidEvent, SchemaDefinitionError, UnknownSchema
from streamforge.schemas.fastpath import FastRecord, compile_fast_record
from streamforge.schemas.rules import RULES, Rule, no_hidden_characters
from streamforge.schemas.validation import INVALID, compile_record
from streamforge.timeutil import format_timestamp

__all__ = ["EventSchema", "SchemaRegistry", "MAX_MESSAGE_BYTES", "CONFLUENT_MAGIC"]

_BACKSLASH = {bytes: b"\\", str: "\\"}
_DEL = {bytes: b"\x7f", str: "\x7f"}

#: Largest message any decoder accepts (Pub/Sub's own limit is 10 MB).
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
#: First byte of a Confluent wire-format message, followed by a 4-byte big-endian schema id.
CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">bI")
_FILE_NAME = re.compile(r"(?P<subject>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass(frozen=True, eq=False)
class EventSchema:
    """One version of one subject, with its validator and codecs."""

    subject: str
    version: int
    definition: Mapping[str, Any] = field(repr=False)
    rules: tuple[Rule, ...] = field(default=(), repr=False)

    @property
    def label(self) -> str:
        return f"{self.subject} v{self.version}"

    @cached_property
    def parsed(self) -> Any:
        return fastavro.parse_schema(json.loads(json.dumps(self.definition)))

    @cached_property
    def _convert(self) -> Callable[..., Any]:
        return compile_record(self.definition)

    @cached_property
    def _fast(self) -> FastRecord:
        return compile_fast_record(self.definition)

    @cached_property
    def schema_id(self) -> int:
        """The 31-bit id written in the Confluent wire format.

        Derived from subject and version, so every producer and consumer agrees on it without
        a registry service.
        """
        digest = hashlib.sha256(f"{self.subject}:v{self.version}".encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the definition without ``doc`` strings: what published.json pins."""
        return hashlib.sha256(json.dumps(_strip_docs(self.definition), sort_keys=True).encode()).hexdigest()

    @cached_property
    def bigquery(self) -> BigQueryTable | None:
        return bigquery_table(self.definition)

    def field_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.definition["fields"])

    def enum_symbols(self, field_name: str) -> tuple[str, ...]:
        for f in self.definition["fields"]:
            if f["name"] == field_name:
                avro_type = f["type"]
                if isinstance(avro_type, list):
                    avro_type = next(t for t in avro_type if t != "null")
                if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
                    return tuple(avro_type["symbols"])
                raise ValueError(f"{self.label}: field '{field_name}' is not an enum")
        raise ValueError(f"{self.label}: no field '{field_name}'")

    # -- validation ---------------------------------------------------------------------

    def validate(self, obj: Any, *, plain_text: bool = False) -> dict[str, Any]:
        """Check a record (JSON form or Python form) and return its Python form.

        Raises InvalidEvent listing every problem (field, value, reason). ``plain_text``: the
        caller knows no string can hold a hidden character (``from_json`` on ASCII JSON with no
        escape), so that rule is skipped: it is a quarter of a clean event's validation.
        """
        errors: list[FieldError] = []
        record = self._fast(obj)  # the common valid record, quickly; None: ask the converters
        if record is None:
            record = self._convert(obj, "", errors)
            if errors or record is INVALID:
                raise InvalidEvent(self.label, errors or [FieldError("", obj, "invalid")])
        for rule in self.rules:
            if plain_text and rule is no_hidden_characters:
                continue
            errors.extend(rule(record))
        if errors:
            raise InvalidEvent(self.label, errors)
        return record

    # -- JSON -----------------------------------------------------------------------------

    def to_json(self, record: Mapping[str, Any], *, validate: bool = True) -> bytes:
        if validate:
            record = self.validate(record)
        return orjson.dumps(record, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)

    def from_json(self, data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
        """Decode and validate one JSON message (any input; only InvalidEvent is raised)."""
        if not isinstance(data, (bytes, bytearray, memoryview, str)):
            raise InvalidEvent(
                self.label, [FieldError("", type(data).__name__, "expected bytes or str")], "invalid_json"
            )
        if len(data) > MAX_MESSAGE_BYTES:
            raise InvalidEvent(
                self.label, [FieldError("", f"<{len(data)} bytes>", "message too large")], "invalid_json"
            )
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(
                self.label, [FieldError("", _snippet(data), f"invalid JSON: {exc}")], "invalid_json"
            ) from None
        # JSON strings hold no raw control character, so ASCII without a backslash (no escape)
        # or DEL has printable ASCII strings only.
        plain = (
            type(data) in (bytes, str)
            and data.isascii()
            and _BACKSLASH[type(data)] not in data
            and _DEL[type(data)] not in data
        )
        return self.validate(obj, plain_text=plain)

    # -- Avro binary ----------------------------------------------------------------------

    def to_avro(self, record: Mapping[str, Any], *, validate: bool = True) -> bytes:
        """Plain Avro binary (schemaless): the reader must know the writer's version."""
        if validate:
            record = self.validate(record)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self.parsed, record)
        return buffer.getvalue()

    def from_avro(self, data: bytes | bytearray | memoryview, writer: EventSchema | None = None) -> dict[str, Any]:
        """Decode plain Avro binary written with ``writer`` (default: this schema) into this version."""
        return self._read_avro(data, 0, writer or self)

    def from_confluent_written_with(self, data: bytes | bytearray | memoryview, writer: EventSchema) -> dict[str, Any]:
        """Decode a Confluent wire-format message whose header names ``writer`` (e.g. a schema
        from a registry, schemas/remote.py) into this version."""
        return self._read_avro(data, _CONFLUENT_HEADER.size, writer)

    def to_confluent(self, record: Mapping[str, Any], *, validate: bool = True) -> bytes:
        """Confluent wire format: magic byte 0, 4-byte schema id, Avro binary."""
        return _CONFLUENT_HEADER.pack(CONFLUENT_MAGIC, self.schema_id) + self.to_avro(record, validate=validate)

    def _read_avro(self, data: Any, offset: int, writer: EventSchema) -> dict[str, Any]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidEvent(self.label, [FieldError("", type(data).__name__, "expected bytes")], "invalid_avro")
        if len(data) > MAX_MESSAGE_BYTES:
            raise InvalidEvent(
                self.label, [FieldError("", f"<{len(data)} bytes>", "message too large")], "invalid_avro"
            )
        buffer = io.BytesIO(bytes(data))
        buffer.seek(offset)
        try:
            record = fastavro.schemaless_reader(buffer, writer.parsed, self.parsed)
        except Exception as exc:  # fastavro raises many types on corrupt input; report them all precisely
            reason = f"not {writer.label} Avro: {type(exc).__name__}: {exc}"
            raise InvalidEvent(self.label, [FieldError("", _snippet(data), reason)], "invalid_avro") from None
        if buffer.tell() != len(data):
            reason = f"{len(data) - buffer.tell()} trailing byte(s) after the {writer.label} record"
            raise InvalidEvent(self.label, [FieldError("", _snippet(data), reason)], "invalid_avro")
        return self.validate(record)


class SchemaRegistry:
    """All versions of all subjects, by subject, version and Confluent schema id."""

    def __init__(self, schemas: Iterable[EventSchema]):
        self._by_subject: dict[str, dict[int, EventSchema]] = {}
        self._by_id: dict[int, EventSchema] = {}
        for schema in schemas:
            versions = self._by_subject.setdefault(schema.subject, {})
            if schema.version in versions:
                raise SchemaDefinitionError(f"{schema.label} is defined twice")
            versions[schema.version] = schema
            clash = self._by_id.get(schema.schema_id)
            if clash is not None:
                raise SchemaDefinitionError(f"{schema.label} and {clash.label} share schema id {schema.schema_id}")
            self._by_id[schema.schema_id] = schema

    @classmethod
    def from_directory(cls, directory: Path, rules: Mapping[str, tuple[Rule, ...]] = RULES) -> SchemaRegistry:
        schemas = []
        for path in sorted(Path(directory).glob("*.avsc")):
            match = _FILE_NAME.fullmatch(path.name)
            if match is None:
                raise SchemaDefinitionError(f"{path.name}: schema files are named <subject>.v<N>.avsc")
            try:
                definition = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SchemaDefinitionError(f"{path.name}: not valid JSON: {exc}") from None
            subject = match["subject"]
            schema = EventSchema(subject, int(match["version"]), definition, rules.get(subject, ()))
            try:
                schema.parsed, schema._convert, schema._fast, schema.bigquery  # noqa: B018 - fail fast on a bad file
            except (SchemaDefinitionError, fastavro.schema.SchemaParseException, KeyError, TypeError) as exc:
                raise SchemaDefinitionError(f"{path.name}: {exc}") from None
            schemas.append(schema)
        return cls(schemas)

    def subjects(self) -> list[str]:
        return sorted(self._by_subject)

    def versions(self, subject: str) -> list[EventSchema]:
        return [v for _, v in sorted(self._lookup(subject).items())]

    def get(self, subject: str, version: int | None = None) -> EventSchema:
        versions = self._lookup(subject)
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise UnknownSchema(f"{subject} has no version {version} (versions: {sorted(versions)})")
        return versions[version]

    def has_id(self, schema_id: int) -> bool:
        return schema_id in self._by_id

    def by_id(self, schema_id: int) -> EventSchema:
        if schema_id not in self._by_id:
            raise UnknownSchema(f"no schema has id {schema_id}")
        return self._by_id[schema_id]

    def __iter__(self):
        for subject in self.subjects():
            yield from self.versions(subject)

    def from_confluent(self, data: Any, subject: str | None = None, version: int | None = None) -> dict[str, Any]:
        """Decode a Confluent wire-format message into ``subject`` (latest version by default).

        The writer schema comes from the id in the header; it must belong to ``subject`` when
        one is given.
        """
        label = subject or "confluent"
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidEvent(label, [FieldError("", type(data).__name__, "expected bytes")], "invalid_avro")
        if len(data) < _CONFLUENT_HEADER.size:
            raise InvalidEvent(
                label, [FieldError("", _snippet(data), "shorter than the 5-byte Confluent header")], "invalid_avro"
            )
        magic, schema_id = _CONFLUENT_HEADER.unpack_from(bytes(data[: _CONFLUENT_HEADER.size]))
        if magic != CONFLUENT_MAGIC:
            raise InvalidEvent(
                label, [FieldError("", magic, "magic byte must be 0 (Confluent wire format)")], "invalid_avro"
            )
        try:
            writer = self.by_id(schema_id)
        except UnknownSchema as exc:
            raise InvalidEvent(label, [FieldError("schema_id", schema_id, str(exc))], "invalid_avro") from None
        if subject is not None and writer.subject != subject:
            reason = f"schema id belongs to {writer.label}, expected {subject}"
            raise InvalidEvent(label, [FieldError("schema_id", schema_id, reason)], "invalid_avro")
        reader = self.get(writer.subject, version)
        return reader._read_avro(data, _CONFLUENT_HEADER.size, writer)

    def _lookup(self, subject: str) -> dict[int, EventSchema]:
        if subject not in self._by_subject:
            raise UnknownSchema(f"unknown schema '{subject}' (known: {', '.join(self.subjects())})")
        return self._by_subject[subject]


def _strip_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_strip_docs(v) for v in node]
    return node


def _snippet(data: Any) -> str:
    raw = bytes(data[:48]) if not isinstance(data, str) else data[:48].encode("utf-8", "replace")
    text = raw.decode("utf-8", "backslashreplace")
    return text + ("..." if len(data) > 48 else "")
