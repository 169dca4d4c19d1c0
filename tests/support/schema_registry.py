"""A stand-in for a Confluent Schema Registry on 127.0.0.1: the one endpoint a consumer uses,
``GET /schemas/ids/{id}``, answered as the registry's REST API documents it (``{"schema":
"<Avro JSON>"}``, 404 with error code 40403 for an unknown id). No registry server can be
installed on these machines; this serves the schemas a test registers and counts lookups."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

__all__ = ["SchemaRegistryStandIn", "schema_registry"]


class SchemaRegistryStandIn:
    def __init__(self, schemas: dict[int, Any]):
        self.schemas = schemas
        self.lookups: Counter[int] = Counter()
        self.headers: list[dict[str, str]] = []
        self.url = ""


@contextmanager
def schema_registry(schemas: dict[int, Any]) -> Iterator[SchemaRegistryStandIn]:
    """Serve ``schemas`` (id -> Avro definition) until the block ends."""
    registry = SchemaRegistryStandIn(schemas)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            match = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
            schema_id = int(match.group(1)) if match else -1
            registry.lookups[schema_id] += 1
            registry.headers.append(dict(self.headers.items()))
            if schema_id in registry.schemas:
                status, body = 200, {"schema": json.dumps(registry.schemas[schema_id])}
            else:
                status, body = 404, {"error_code": 40403, "message": "Schema not found"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
