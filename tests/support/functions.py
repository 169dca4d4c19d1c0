"""Helpers for the Cloud Function tests (and only tests): Pub/Sub CloudEvents as Eventarc sends
them, test keys and webhooks, and a function run as a real functions-framework process on
127.0.0.1, from the checkout (``streamforge functions serve``) or from a packaged folder."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from streamforge.functions.dispatcher import PUBSUB_MESSAGE_PUBLISHED
from streamforge.functions.packaging import FUNCTIONS
from streamforge.packaging import REPO_ROOT
from tests.support.cli import STREAMFORGE, entry_point_env
from tests.support.environments import CleanEnvironment
from tests.support.servers import LOOPBACK, free_port, stop_process, wait_for_port

#: The samples and the simulator's default run are dated 2026-11-01: replaying them through
#: ingest needs a wider max_event_age than the default 7 days (a test of the bound sets its own).
REPLAY_CONFIG = '[pipelines]\nmax_event_age = "36500d"\n'
#: Test-only signing secret and API key (not secrets of any deployment).
SECRET = "test-signing-secret-0123456789"
API_KEY = "test-api-key-0123456789abcdef"
#: How ingest publishes a client's event_id under API_KEY (computed here, not with ingest's code).
KEY_PREFIX = hashlib.sha256(API_KEY.encode()).hexdigest()[:8] + "."
FUNCTIONS_DIR = REPO_ROOT / "functions"


def pubsub_event(
    payload: bytes | str | dict[str, Any],
    *,
    message_id: str = "m-1",
    structured: bool = False,
    event_type: str = PUBSUB_MESSAGE_PUBLISHED,
) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of the CloudEvent Eventarc sends for one Pub/Sub message."""
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    event = CloudEvent(
        {"type": event_type, "source": "//pubsub.googleapis.com/projects/p/topics/fraud-alerts", "id": message_id},
        {
            "message": {
                "data": base64.b64encode(payload).decode(),
                "messageId": message_id,
                "attributes": {"schema": "fraud_alert"},
            },
            "subscription": "projects/p/subscriptions/eventarc-alerts",
        },
    )
    return to_structured(event) if structured else to_binary(event)


def json_webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret_env": "TEST_WEBHOOK_SECRET", **extra}


def dispatcher_env(webhooks: list[dict[str, Any]], **extra: str) -> dict[str, str]:
    return {"STREAMFORGE_WEBHOOKS": json.dumps(webhooks), "TEST_WEBHOOK_SECRET": SECRET, **extra}


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def parse_log_lines(text: str) -> list[dict]:
    """The structured (JSON) log lines in a function's output, in order."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return lines


@dataclass
class RunningFunction:
    url: str
    log: Path

    def log_lines(self) -> list[dict]:
        """The function's structured log lines so far."""
        return parse_log_lines(self.log.read_text(errors="replace"))


def packaged_environment(bundle: Path, folder: Path) -> CleanEnvironment:
    """A clean environment holding what the packaged folder ``bundle`` installs: its
    requirements.txt (the wheel beside it, with the functions extra), and nothing else."""
    folder.mkdir(parents=True)
    environment = CleanEnvironment.create(folder)
    environment.install("--requirement", "requirements.txt", cwd=bundle)
    return environment


@contextmanager
def running_function(
    name: str, env: dict[str, str], *, bundle: Path | None = None, python: Path | None = None, push: bool = False
) -> Iterator[RunningFunction]:
    """``streamforge functions serve NAME``, or with ``bundle`` (a packaged folder) and ``python``
    (an environment holding only the folder's requirements.txt, installed as Cloud Functions'
    build installs it) functions-framework on that folder alone, as Cloud Functions runs it.
    ``push``: the entry point a Pub/Sub push subscription calls (HTTP), as deployed."""
    port = free_port()
    spec = FUNCTIONS[name]
    target, signature = (spec.push_target, "http") if push else (spec.target, spec.signature_type)
    with tempfile.TemporaryDirectory(prefix=f"sf-fn-{name}-") as tmp:
        log = Path(tmp) / "function.log"
        if bundle is None:
            command = [str(STREAMFORGE), "functions", "serve", name, "--port", str(port), *(["--push"] if push else [])]
            cwd, extra = tmp, {}
        else:
            assert python is not None, "a packaged folder runs in the environment its requirements.txt made"
            command = [
                str(python),
                "-m",
                "functions_framework",
                "--target",
                target,
                "--source",
                "main.py",
                "--signature-type",
                signature,
                "--host",
                LOOPBACK,
                "--port",
                str(port),
            ]
            cwd, extra = str(bundle), {}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=entry_point_env(**extra, **env),
                start_new_session=True,
            )
        try:
            wait_for_port(port, process, log, timeout=60)
            yield RunningFunction(f"http://{LOOPBACK}:{port}/", log)
        finally:
            stop_process(process)
