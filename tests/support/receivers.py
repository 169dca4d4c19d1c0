"""A scriptable HTTP receiver on 127.0.0.1 for webhook tests: answers each path with the
statuses (and delays) a test queues, and records every request it got."""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the body was read


class ScriptedReceiver:
    """``answer(path, status, delay=0, times=1)`` queues answers; unqueued requests get 200."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: dict[str, deque[tuple[int, float]]] = defaultdict(deque)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers.items()), body, time.time()))
                    queued = receiver._script[self.path]
                    status, delay = queued.popleft() if queued else (200, 0.0)
                if delay:
                    time.sleep(delay)
                payload = b'{"error": "scripted"}' if status >= 300 else b'{"ok": true}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(self, path: str, status: int, delay: float = 0.0, times: int = 1) -> None:
        with self._lock:
            self._script[path].extend([(status, delay)] * times)

    def on(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> ScriptedReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class RawReceiver:
    """A TCP server on 127.0.0.1 whose answers a test writes by hand: for each connection it
    reads one request (headers and Content-Length body) and calls ``answer(conn)``, which may
    trickle bytes, send a huge body or say nothing. ``requests`` counts the requests read."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.requests, self.sent = answer, 0, 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopped = threading.Event()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}{path}"

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    (
                        line.split(b":", 1)[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    b"0",
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            try:
                self.answer(conn, self)
            except OSError:  # the client gave up: what these tests provoke
                pass

    def __enter__(self) -> RawReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopped.set()
        self._server.close()
