"""A stand-in for the Dataflow API (v1b3 REST) on 127.0.0.1, for the job-control commands.

It answers what ``google-cloud-dataflow-client`` asks for following, draining and cancelling
jobs, and records every request, so a test can say what was (and was not) asked of Dataflow.
Each job's state follows a script: the next state on every read, the last one repeated.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

#: JobState as the REST API numbers it (the client sends enums as numbers: enum-encoding=int).
STATES = [
    "JOB_STATE_UNKNOWN",
    "JOB_STATE_STOPPED",
    "JOB_STATE_RUNNING",
    "JOB_STATE_DONE",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_UPDATED",
    "JOB_STATE_DRAINING",
    "JOB_STATE_DRAINED",
    "JOB_STATE_PENDING",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_QUEUED",
    "JOB_STATE_RESOURCE_CLEANING_UP",
]
_JOBS = re.compile(r"^/v1b3/projects/([^/]+)/locations/([^/]+)/jobs(?:/([^/:?]+))?(/metrics)?$")


@dataclass
class FakeJob:
    id: str
    name: str
    states: list[str]  # read in turn; the last one stays
    type: str = "JOB_TYPE_STREAMING"
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # {namespace: {name: value}}
    reads: int = 0

    def state(self, advance: bool) -> str:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += advance
        return state

    def json(self, advance: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "currentState": self.state(advance),
            "type": self.type,
            "projectId": "my-proj-123",
            "location": "europe-west1",
        }


class FakeDataflow:
    def __init__(self, jobs: list[FakeJob]):
        self.jobs = {job.id: job for job in jobs}
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body)
        self.lock = threading.Lock()

    def changes(self) -> list[tuple[str, Any]]:
        """The state changes asked for: (job id, requested state)."""
        changes = []
        for method, path, body in self.requests:
            if method == "PUT":
                state = body.get("requestedState")
                changes.append((path.rsplit("/", 1)[-1], STATES[state] if isinstance(state, int) else state))
        return changes

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, body))
            match = _JOBS.match(path)
            if match is None:
                return 404, {"error": {"code": 404, "message": f"no such path {path}", "status": "NOT_FOUND"}}
            job_id, metrics = match.group(3), match.group(4)
            if job_id is None:
                return 200, {"jobs": [job.json() for job in self.jobs.values()]}
            job = self.jobs.get(job_id)
            if job is None:
                return 404, {"error": {"code": 404, "message": f"job {job_id} not found", "status": "NOT_FOUND"}}
            if metrics:
                return 200, {
                    "metrics": [
                        {
                            "name": {
                                "origin": "user",
                                "name": counter,
                                "context": {"namespace": namespace, "step": "s1"},
                            },
                            "scalar": value,
                        }
                        for namespace, values in job.counters.items()
                        for counter, value in values.items()
                    ]
                }
            if method == "PUT":
                return 200, job.json()
            return 200, job.json(advance=True)


@contextmanager
def dataflow_api(jobs: list[FakeJob]) -> Iterator[tuple[FakeDataflow, str]]:
    """The stand-in and its endpoint (http://127.0.0.1:PORT) while the block runs."""
    fake = FakeDataflow(jobs)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            status, answer = fake.handle(method, self.path.split("?", 1)[0], body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._answer("PUT")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
