"""A stand-in for the metadata server of a Google Cloud VM, on 127.0.0.1: what google-auth asks
a launcher VM or a worker for (is this Google Cloud, the service account, a token, the project).

Google's Flex Template launcher and Dataflow's workers get their credentials this way; a process
given ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` of this server authenticates as
``account`` without any network, and every request it makes carries the token
``token_for(account)``.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from tests.support.servers import LOOPBACK

__all__ = ["metadata_server", "token_for"]


def token_for(account: str) -> str:
    return f"stand-in-token-for-{account}"


@contextmanager
def metadata_server(account: str, project: str, project_number: str = "123456789012") -> Iterator[dict[str, str]]:
    """Yields the environment that points google-auth at the server."""
    base = "/computeMetadata/v1"
    answers = {
        "/": "",
        f"{base}/project/project-id": project,
        f"{base}/project/numeric-project-id": project_number,
        f"{base}/universe/universe-domain": "googleapis.com",
        f"{base}/instance/service-accounts/default/email": account,
        f"{base}/instance/service-accounts/default/": json.dumps(
            {"aliases": ["default"], "email": account, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
        ),
        f"{base}/instance/service-accounts/default/token": json.dumps(
            {"access_token": token_for(account), "expires_in": 3600, "token_type": "Bearer"}
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            body = answers.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Metadata-Flavor", "Google")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/plain")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    address = f"{LOOPBACK}:{server.server_address[1]}"
    try:
        yield {"GCE_METADATA_HOST": address, "GCE_METADATA_IP": address}
    finally:
        server.shutdown()
        server.server_close()
