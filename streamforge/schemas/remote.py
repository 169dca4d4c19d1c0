"""Writer schemas from a Confluent Schema Registry, for schema ids the project does not have.

The project's own schemas carry ids derived from subject and version (versioned.py), so
StreamForge's producers and consumers agree without a registry. A producer elsewhere (Kafka
Connect, another team's service) registers its schema and writes the id the registry gave
it. For such an id the parse step asks the registry (``GET /schemas/ids/{id}``, the
registry's REST API) for the writer schema and decodes the message with it into the
stream's current schema, by Avro's resolution rules; the event is then validated like any
other. An id is asked once per process: a found schema is kept (ids never change), a
missing one is remembered for ``NEGATIVE_TTL_S`` so a stream of unknown ids does not become a
stream of requests.

Credentials (``USER:PASSWORD``) come from ``STREAMFORGE_SCHEMA_REGISTRY_AUTH`` when the
lookup runs, never from the URL or the job graph.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request

from streamforge.schemas.versioned import EventSchema

__all__ = ["AUTH_ENV", "NEGATIVE_TTL_S", "RemoteSchemaError", "RemoteSchemas", "header_schema_id"]

NEGATIVE_TTL_S = 60.0
TIMEOUT_S = 10.0
AUTH_ENV = "STREAMFORGE_SCHEMA_REGISTRY_AUTH"


class RemoteSchemaError(LookupError):
    """The registry does not know the id, or could not be asked; the message says which and why."""


class RemoteSchemas:
    """Cached writer schemas by id from the registry at ``url``."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self._found: dict[int, EventSchema] = {}
        self._missing: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self.requests = 0

    def writer(self, schema_id: int) -> EventSchema:
        """The writer schema of ``schema_id``; RemoteSchemaError when there is none."""
        with self._lock:
            found = self._found.get(schema_id)
            if found is not None:
                return found
            missing = self._missing.get(schema_id)
            if missing is not None and time.monotonic() - missing[0] < NEGATIVE_TTL_S:
                raise RemoteSchemaError(missing[1])
            try:
                schema = self._fetch(schema_id)
            except RemoteSchemaError as exc:
                self._missing[schema_id] = (time.monotonic(), str(exc))
                raise
            self._found[schema_id] = schema
            return schema

    def _fetch(self, schema_id: int) -> EventSchema:
        self.requests += 1
        request = urllib.request.Request(
            f"{self.url}/schemas/ids/{schema_id}", headers={"Accept": "application/vnd.schemaregistry.v1+json"}
        )
        auth = os.environ.get(AUTH_ENV)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        where = f"schema registry {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) checked in the URL
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = _message(exc)
            raise RemoteSchemaError(
                f"{where} has no schema id {schema_id} (HTTP {exc.code}{': ' + detail if detail else ''})"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RemoteSchemaError(f"{where} could not be asked for schema id {schema_id}: {exc}") from None
        if body.get("schemaType", "AVRO") != "AVRO":
            raise RemoteSchemaError(f"{where}: schema id {schema_id} is {body['schemaType']}, not Avro")
        try:
            definition = json.loads(body["schema"])
            schema = EventSchema(f"registry id {schema_id}", 0, definition)
            schema.parsed  # noqa: B018 - a schema fastavro cannot parse fails here, once
        except Exception as exc:  # noqa: BLE001 - whatever the registry sent, say what is wrong with it
            raise RemoteSchemaError(f"{where}: schema id {schema_id} is not a usable Avro schema: {exc}") from None
        return schema


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read()).get("message", ""))
    except Exception:  # noqa: BLE001 - the body is only a detail
        return ""


def header_schema_id(payload: bytes) -> int | None:
    """The schema id of a Confluent wire-format payload (None if it has no such header)."""
    if len(payload) < 5 or payload[0] != 0:
        return None
    return int.from_bytes(payload[1:5], "big")
