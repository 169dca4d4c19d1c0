"""The alert dispatcher through functions-framework's test client, against real HTTP receivers
on 127.0.0.1: signed delivery, filters, Slack, and what each failure means for Pub/Sub."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time

import functions_framework
import pytest

from streamforge.functions.packaging import FUNCTIONS
from streamforge.functions.webhooks import WebhookConfigError
from tests.support.functions import FUNCTIONS_DIR, SECRET, dispatcher_env, json_webhook, pubsub_event, write_config
from tests.support.functions import parse_log_lines as log_lines
from tests.support.receivers import ScriptedReceiver
from tests.support.samples import ALERT, sample


@pytest.fixture
def receiver():
    with ScriptedReceiver() as r:
        yield r


def _dispatcher(function_client, receiver, *extra_hooks, **env):
    hooks = [json_webhook("risk", receiver.url("/risk")), *extra_hooks]
    return function_client("alert_dispatcher", **dispatcher_env(hooks, **env))


def _post(client, payload=ALERT, **options):
    headers, body = pubsub_event(payload, **options)
    return client.post("/", headers=headers, data=body)


def test_a_signed_alert_reaches_every_matching_webhook(function_client, receiver, capsys) -> None:
    client = _dispatcher(
        function_client,
        receiver,
        {"name": "slack", "format": "slack", "url_env": "SLACK_URL"},
        json_webhook("location-team", receiver.url("/location"), alert_types=["LOCATION_ANOMALY"]),
        json_webhook("high-risk", receiver.url("/high"), min_risk_score=0.9),
        SLACK_URL=receiver.url("/slack"),
    )
    response = _post(client)
    assert response.status_code == 200
    assert [r.path for r in receiver.requests] == ["/risk", "/slack"]  # the other two filter it out
    risk = receiver.on("/risk")[0]
    assert json.loads(risk.body) == ALERT
    timestamp = risk.headers["X-StreamForge-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + risk.body, hashlib.sha256).hexdigest()
    assert risk.headers["X-StreamForge-Signature"] == f"v1={expected}"
    assert risk.headers["Idempotency-Key"] == "a-1"
    assert risk.headers["Content-Type"] == "application/json"
    slack = json.loads(receiver.on("/slack")[0].body)
    assert slack["text"].startswith("Fraud alert: RAPID_ORDERS (risk 0.85): user U00000001, order O0001.")
    assert "X-StreamForge-Signature" not in receiver.on("/slack")[0].headers
    output = capsys.readouterr().out
    delivered = [line for line in log_lines(output) if line["message"] == "alert delivered"]
    assert [(d["webhook"], d["status"]) for d in delivered] == [("risk", 200), ("slack", 200)]
    assert SECRET not in output and receiver.url("/slack") not in output


def test_structured_cloudevents_work_too(function_client, receiver) -> None:
    client = _dispatcher(function_client, receiver)
    assert _post(client, structured=True).status_code == 200
    assert len(receiver.on("/risk")) == 1


def test_a_5xx_makes_pubsub_retry_and_the_retry_skips_webhooks_that_took_it(function_client, receiver, capsys) -> None:
    client = _dispatcher(function_client, receiver, json_webhook("audit", receiver.url("/audit")))
    receiver.answer("/audit", 503)
    first = _post(client)
    assert first.status_code == 500  # functions-framework's answer to a raised error: Pub/Sub redelivers
    second = _post(client)  # the redelivery of the same message
    assert second.status_code == 200
    assert len(receiver.on("/risk")) == 1 and len(receiver.on("/audit")) == 2
    warnings = [line for line in log_lines(capsys.readouterr().out) if line["severity"] == "WARNING"]
    assert warnings[0]["webhook"] == "audit" and warnings[0]["reason"].startswith("HTTP 503")


@pytest.mark.parametrize(
    "status, retried",
    [(400, False), (404, False), (410, False), (301, False), (429, True), (408, True), (500, True), (502, True)],
)
def test_which_answers_are_retried(function_client, receiver, status, retried) -> None:
    client = _dispatcher(function_client, receiver)
    receiver.answer("/risk", status)
    assert _post(client).status_code == (500 if retried else 200)


def test_a_permanent_rejection_is_logged_acknowledged_and_not_sent_again(function_client, receiver, capsys) -> None:
    client = _dispatcher(function_client, receiver, json_webhook("audit", receiver.url("/audit")))
    receiver.answer("/risk", 400)
    receiver.answer("/audit", 500)
    assert _post(client).status_code == 500  # audit is worth retrying ...
    assert _post(client).status_code == 200  # ... and on the retry the 400 is not repeated
    assert len(receiver.on("/risk")) == 1 and len(receiver.on("/audit")) == 2
    errors = [line for line in log_lines(capsys.readouterr().out) if line["severity"] == "ERROR"]
    assert errors[0]["message"] == "webhook rejected the alert: not retried"
    assert errors[0]["webhook"] == "risk" and errors[0]["reason"] == 'HTTP 400: {"error": "scripted"}'


def _retry_reasons(capsys) -> dict[str, str]:
    return {
        line["webhook"]: line["reason"]
        for line in log_lines(capsys.readouterr().out)
        if line["message"] == "webhook delivery failed: will be retried"
    }


def test_a_slow_receiver_hits_the_timeout(function_client, receiver, tmp_path, capsys) -> None:
    config = write_config(tmp_path / "c.toml", '[alert_dispatcher]\nwebhook_timeout = "300ms"\n')
    client = _dispatcher(function_client, receiver, STREAMFORGE_CONFIG=str(config))
    receiver.answer("/risk", 200, delay=1.5)
    started = time.perf_counter()
    response = _post(client)
    elapsed = time.perf_counter() - started
    assert response.status_code == 500
    assert _retry_reasons(capsys) == {"risk": "timeout after 0.3 s"}
    assert elapsed < 1.2


def test_an_unreachable_receiver_is_retried(function_client, receiver, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = function_client("alert_dispatcher", **dispatcher_env([json_webhook("gone", f"http://127.0.0.1:{port}/x")]))
    response = _post(client)
    assert response.status_code == 500
    assert _retry_reasons(capsys) == {
        "gone": "connection failed: ConnectionRefusedError: [Errno 111] Connection refused"
    }


@pytest.mark.parametrize(
    "options, reason",
    [
        (dict(payload=b"\xff not json"), "invalid JSON"),
        (dict(payload=sample("fraud_alert", risk_score=2)), "risk_score=2.0: must be <= 1"),
        (dict(payload={**ALERT, "alert_type": "SHOPLIFTING"}), "alert_type='SHOPLIFTING'"),
        (dict(payload=ALERT, event_type="google.cloud.storage.object.v1.finalized"), "is not google.cloud.pubsub"),
    ],
)
def test_a_malformed_message_is_logged_and_acknowledged(function_client, receiver, capsys, options, reason) -> None:
    client = _dispatcher(function_client, receiver)
    assert _post(client, **options).status_code == 200  # acknowledged: a retry would fail the same way
    assert receiver.requests == []
    (error,) = [line for line in log_lines(capsys.readouterr().out) if line["severity"] == "ERROR"]
    assert error["message"] == "alert rejected: not retried" and reason in error["reason"]
    assert error["cloud_event_id"] == "m-1"


def test_message_data_that_is_not_base64_or_missing(function_client, receiver, capsys) -> None:
    client = _dispatcher(function_client, receiver)
    headers, _ = pubsub_event(ALERT)
    bad = {"message": {"data": "%%%not-base64%%%", "messageId": "m-9"}}
    assert client.post("/", headers={**headers, "Content-Type": "application/json"}, json=bad).status_code == 200
    assert (
        client.post(
            "/", headers={**headers, "Content-Type": "application/json"}, json={"message": {"messageId": "m-10"}}
        ).status_code
        == 200
    )
    assert (
        client.post("/", headers={**headers, "Content-Type": "application/json"}, json={"no": "message"}).status_code
        == 200
    )
    reasons = [line["reason"] for line in log_lines(capsys.readouterr().out) if line["severity"] == "ERROR"]
    assert reasons == [
        "Pub/Sub message m-9: data is not base64",
        "Pub/Sub message m-10 has no data",
        "CloudEvent data has no 'message' object: not a Pub/Sub messagePublished event",
    ]
    assert receiver.requests == []


def test_a_request_that_is_no_cloudevent_gets_a_400(function_client, receiver) -> None:
    client = _dispatcher(function_client, receiver)
    response = client.post("/", data=b'{"hello": 1}', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "parsing CloudEvent failed" in response.get_data(as_text=True)


def test_a_misconfigured_dispatcher_fails_at_start(function_client) -> None:
    with pytest.raises(WebhookConfigError, match="secret_env"):
        function_client(
            "alert_dispatcher", STREAMFORGE_WEBHOOKS=json.dumps([{"name": "x", "url": "https://x.example.com"}])
        )


@pytest.mark.firestore
def test_the_firestore_ledger_carries_deliveries_across_instances(
    function_client, receiver, firestore, monkeypatch
) -> None:
    """Two instances (two loads of main.py), one Firestore emulator: the retry that lands on the
    second instance skips the webhook the first one delivered to."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "streamforge-test")
    collection = f"alert_deliveries_{time.time_ns()}"
    env = dispatcher_env(
        [json_webhook("risk", receiver.url("/risk")), json_webhook("audit", receiver.url("/audit"))],
        STREAMFORGE_ALERT_LEDGER=f"firestore://{collection}",
    )
    first = function_client("alert_dispatcher", **env)
    second = function_client("alert_dispatcher", **env)
    receiver.answer("/audit", 500)
    assert _post(first).status_code == 500
    assert _post(second).status_code == 200
    assert len(receiver.on("/risk")) == 1 and len(receiver.on("/audit")) == 2
    from google.cloud import firestore as fs

    document = fs.Client(project="streamforge-test").collection(collection).document("a-1").get().to_dict()
    assert {name: entry["outcome"] for name, entry in document["webhooks"].items()} == {
        "risk": "delivered",
        "audit": "delivered",
    }
    assert document["expire_at"].timestamp() > time.time() + 6 * 86400  # ledger_ttl 7d, for a TTL policy


def _push_client(monkeypatch, receiver, *extra_hooks):
    """The ``dispatch_push`` entry point: what the infrastructure program deploys behind an
    authenticated Pub/Sub push subscription."""
    for key, value in dispatcher_env([json_webhook("risk", receiver.url("/risk")), *extra_hooks]).items():
        monkeypatch.setenv(key, value)
    target = FUNCTIONS["alert_dispatcher"].push_target
    return functions_framework.create_app(
        target, str(FUNCTIONS_DIR / "alert_dispatcher" / "main.py"), "http"
    ).test_client()


def _push_body(payload, message_id="m-7") -> bytes:
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps(
        {
            "message": {"data": data, "messageId": message_id, "attributes": {}},
            "subscription": "projects/p/subscriptions/streamforge-alert-dispatcher",
        }
    ).encode()


def test_a_pubsub_push_request_is_delivered_and_a_failure_makes_pubsub_retry(monkeypatch, receiver) -> None:
    client = _push_client(monkeypatch, receiver, json_webhook("audit", receiver.url("/audit")))
    receiver.answer("/audit", 503)
    assert client.post("/", data=_push_body(ALERT)).status_code == 500  # a push subscription retries a 5xx
    assert client.post("/", data=_push_body(ALERT)).status_code == 204  # the retry: only audit is tried again
    assert len(receiver.on("/risk")) == 1 and len(receiver.on("/audit")) == 2
    assert json.loads(receiver.on("/risk")[0].body) == ALERT


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"not json", "push request body is not JSON"),
        (b'{"subscription": "s"}', "push request has no 'message' object"),
        (
            json.dumps({"message": {"data": "!!", "messageId": "m-9"}}).encode(),
            "Pub/Sub message m-9: data is not base64",
        ),
    ],
)
def test_a_malformed_push_request_is_acknowledged_with_its_reason_logged(
    monkeypatch, receiver, capsys, body, reason
) -> None:
    client = _push_client(monkeypatch, receiver)
    assert client.post("/", data=body).status_code == 204  # a retry would fail the same way
    rejected = [line for line in log_lines(capsys.readouterr().out) if line["message"] == "alert rejected: not retried"]
    assert rejected and rejected[0]["reason"].startswith(reason)
    assert receiver.requests == []
