"""Helpers for the Cloud Function tests: Pub/Sub CloudEvents, functions-framework test clients."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import functions_framework
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from streamforge.functions.dispatcher import PUBSUB_MESSAGE_PUBLISHED
from streamforge.functions.packaging import FUNCTIONS
from streamforge.packaging import REPO_ROOT

#: The samples and the simulator's default run are dated 2026-11-01: replaying them through
#: ingest needs a wider max_event_age than the default 7 days (a test of the bound sets its own).
REPLAY_CONFIG = '[pipelines]\nmax_event_age = "36500d"\n'
#: Test-only signing secret and API key (not secrets of any deployment).
SECRET = "test-signing-secret-0123456789"
API_KEY = "test-api-key-0123456789abcdef"
#: How ingest publishes a client's event_id under API_KEY (computed here, not with ingest's code).
KEY_PREFIX = hashlib.sha256(API_KEY.encode()).hexdigest()[:8] + "."
FUNCTIONS_DIR = REPO_ROOT / "functions"


def pubsub_event(payload: bytes | str | dict[str, Any], *, message_id: str = "m-1", structured: bool = False,
                 event_type: str = PUBSUB_MESSAGE_PUBLISHED) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of the CloudEvent Eventarc sends for one Pub/Sub message."""
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    event = CloudEvent(
        {"type": event_type, "source": "//pubsub.googleapis.com/projects/p/topics/fraud-alerts", "id": message_id},
        {"message": {"data": base64.b64encode(payload).decode(), "messageId": message_id,
                     "attributes": {"schema": "fraud_alert"}},
         "subscription": "projects/p/subscriptions/eventarc-alerts"},
    )
    return to_structured(event) if structured else to_binary(event)


def json_webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret_env": "TEST_WEBHOOK_SECRET", **extra}


@pytest.fixture
def function_client(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """``function_client(name, **env)``: a functions-framework test client of functions/<name>/main.py,
    the module loaded with ``env`` set (as its environment on Cloud Functions)."""

    def make(name: str, **env: str) -> Any:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        spec = FUNCTIONS[name]
        app = functions_framework.create_app(spec.target, str(FUNCTIONS_DIR / name / "main.py"), spec.signature_type)
        return app.test_client()

    return make


def dispatcher_env(webhooks: list[dict[str, Any]], **extra: str) -> dict[str, str]:
    return {"STREAMFORGE_WEBHOOKS": json.dumps(webhooks), "TEST_WEBHOOK_SECRET": SECRET, **extra}


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
