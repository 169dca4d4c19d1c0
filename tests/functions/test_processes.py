"""Both functions as real functions-framework processes on 127.0.0.1: the dispatcher beside a
real ``streamforge webhook-sink`` process and scripted receivers, ingest publishing to the
Pub/Sub emulator. Most run from the packaged folders (main.py, requirements.txt and the built
wheel, installed on its own), as Cloud Functions would run them."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from streamforge.functions.packaging import package
from streamforge.packaging import REPO_ROOT, WHEEL_NAME, build_wheel
from tests.support.cli import STREAMFORGE, entry_point_env
from tests.support.environments import clean_env
from tests.support.functions import (
    API_KEY,
    KEY_PREFIX,
    REPLAY_CONFIG,
    SECRET,
    dispatcher_env,
    json_webhook,
    packaged_environment,
    pubsub_event,
    running_function,
    write_config,
)
from tests.support.pubsub import pull_messages
from tests.support.receivers import RawReceiver, ScriptedReceiver
from tests.support.samples import ALERT, CLICK, ORDER, sample
from tests.support.servers import free_port, stop_process, wait_for_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both functions packaged once, each folder's requirements.txt installed into a clean
    environment of its own (as Cloud Functions' build does) for its process to run in."""
    root = tmp_path_factory.mktemp("bundles")
    wheel = build_wheel(root / "wheel")
    archives = {name: package(name, root / "dist", wheel) for name in ("alert_dispatcher", "ingest")}
    python = {name: packaged_environment(root / "dist" / name, root / "env" / name).python for name in archives}
    return {"archives": archives, "dist": root / "dist", "python": python}


def test_the_packaged_folders_hold_the_function_and_the_wheel(bundles) -> None:
    for archive in bundles["archives"].values():
        with zipfile.ZipFile(archive) as zf:
            assert sorted(zf.namelist()) == ["main.py", "requirements.txt", f"wheels/{WHEEL_NAME}"]
            assert f"./wheels/{WHEEL_NAME}[functions]" in zf.read("requirements.txt").decode().splitlines()
    with zipfile.ZipFile(bundles["dist"] / "ingest" / "wheels" / WHEEL_NAME) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read("streamforge-0.1.0.dist-info/METADATA").decode()
    # The shared code and its data files travel in the wheel; the extra pins the function's dependencies.
    assert {
        "streamforge/functions/dispatcher.py",
        "streamforge/schemas/avro/fraud_alert.v1.avsc",
        "streamforge/config/defaults.toml",
    } <= names
    assert 'Requires-Dist: functions-framework==3.10.2; extra == "functions"' in metadata
    # The processes below import streamforge from the installed wheel, not from this checkout.
    where = subprocess.run(
        [str(bundles["python"]["ingest"]), "-c", "import streamforge.functions; print(streamforge.__file__)"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=bundles["dist"] / "ingest",
        check=True,
    ).stdout.strip()
    assert "site-packages" in where and not where.startswith(str(REPO_ROOT))


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamforge webhook-sink --jsonl`` as a process; yields its URL and the process."""
    port = free_port()
    log = tmp_path / "sink.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(STREAMFORGE), "webhook-sink", "--port", str(port), "--jsonl"],
            stdout=subprocess.PIPE,
            stderr=out,
            stdin=subprocess.DEVNULL,
            text=True,
            env=entry_point_env(STREAMFORGE_WEBHOOK_SECRET=SECRET),
            start_new_session=True,
        )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop_process(process)


def _sink_lines(process: subprocess.Popen, count: int) -> list[dict]:
    return [json.loads(process.stdout.readline()) for _ in range(count)]


def _dispatch(url: str, payload: Any = ALERT, **options: Any) -> requests.Response:
    headers, body = pubsub_event(payload, **options)
    return requests.post(url, headers=headers, data=body, timeout=30)


def test_concurrent_alerts_are_one_record_each_in_the_sink_output(sink) -> None:
    """Alerts arriving at once (the dispatcher delivers in parallel) each get a whole line of
    their own: read line by line, every one is there once (`up` and the dashboard count them)."""
    from concurrent.futures import ThreadPoolExecutor

    from streamforge.functions.signing import signature_headers

    sink_url, sink_process = sink
    alerts = [{**ALERT, "alert_id": f"concurrent-{n}", "description": "x" * 2000} for n in range(600)]

    def post(alert: dict) -> int:
        body = json.dumps(alert).encode()
        headers = signature_headers(SECRET, alert["alert_id"], body)
        return requests.post(f"{sink_url}/alerts", data=body, headers=headers, timeout=30).status_code

    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(sink_process.stdout), daemon=True)
    reader.start()  # read while it writes: a full pipe would stall the sink
    with ThreadPoolExecutor(48) as pool:
        assert set(pool.map(post, alerts)) == {200}
    stop_process(sink_process, first=signal.SIGINT)
    reader.join(timeout=30)
    lines = "".join(output).splitlines()
    records = [json.loads(line) for line in lines]  # a line holding two records fails here
    assert sorted(r["body"]["alert_id"] for r in records) == sorted(a["alert_id"] for a in alerts)


def test_served_dispatcher_signs_what_the_sink_verifies_and_a_tampered_body_fails(sink) -> None:
    sink_url, sink_process = sink
    with (
        ScriptedReceiver() as capture,
        running_function(
            "alert_dispatcher",
            dispatcher_env(
                [
                    json_webhook("sink", f"{sink_url}/alerts"),
                    json_webhook("capture", capture.url("/capture")),
                    {"name": "slack", "format": "slack", "url": f"{sink_url}/slack"},
                ]
            ),
        ) as function,
    ):
        assert _dispatch(function.url).status_code == 200
        alert, slack = _sink_lines(sink_process, 2)
        assert (alert["verdict"], alert["body"], alert["idempotency_key"]) == ("alert", ALERT, "a-1")
        assert slack["verdict"] == "slack" and "RAPID_ORDERS" in slack["body"]["text"]
        # Replay what the dispatcher sent to the other webhook: altered, then as it was.
        (sent,) = capture.requests
        headers = {k: v for k, v in sent.headers.items() if k.startswith("X-StreamForge") or k == "Idempotency-Key"}
        tampered = requests.post(
            f"{sink_url}/alerts", data=sent.body.replace(b"0.85", b"0.01"), headers=headers, timeout=10
        )
        assert tampered.status_code == 401
        assert tampered.json()["error"] == "signature does not match the body (tampered body, or the wrong secret)"
        replayed = requests.post(f"{sink_url}/alerts", data=sent.body, headers=headers, timeout=10)
        assert (replayed.status_code, replayed.json()) == (200, {"status": "duplicate"})
        assert [line["verdict"] for line in _sink_lines(sink_process, 2)] == ["bad_signature", "duplicate"]
        assert SECRET not in function.log.read_text()


def test_packaged_dispatcher_retries_5xx_acknowledges_4xx_and_times_out(bundles, tmp_path) -> None:
    write_config(tmp_path / "fast.toml", '[alert_dispatcher]\nwebhook_timeout = "500ms"\n')
    with (
        ScriptedReceiver() as receiver,
        running_function(
            "alert_dispatcher",
            dispatcher_env(
                [json_webhook("risk", receiver.url("/risk"))], STREAMFORGE_CONFIG=str(tmp_path / "fast.toml")
            ),
            bundle=bundles["dist"] / "alert_dispatcher",
            python=bundles["python"]["alert_dispatcher"],
        ) as function,
    ):
        receiver.answer("/risk", 500)
        assert _dispatch(function.url, message_id="m-500").status_code == 500  # Pub/Sub redelivers ...
        assert _dispatch(function.url, message_id="m-500").status_code == 200  # ... and the retry lands
        receiver.answer("/risk", 400)
        assert _dispatch(function.url, {**ALERT, "alert_id": "a-400"}).status_code == 200  # acknowledged
        receiver.answer("/risk", 200, delay=3)
        started = time.perf_counter()
        assert _dispatch(function.url, {**ALERT, "alert_id": "a-slow"}).status_code == 500
        assert time.perf_counter() - started < 2.5
        lines = function.log_lines()
    outcomes = [(line["alert_id"], line["message"], line["reason"]) for line in lines if "webhook" in line]
    assert outcomes == [
        ("a-1", "webhook delivery failed: will be retried", 'HTTP 500: {"error": "scripted"}'),
        ("a-1", "alert delivered", "HTTP 200"),
        ("a-400", "webhook rejected the alert: not retried", 'HTTP 400: {"error": "scripted"}'),
        ("a-slow", "webhook delivery failed: will be retried", "timeout after 0.5 s"),
    ]


def test_packaged_dispatcher_refuses_malformed_cloudevents_and_messages(bundles) -> None:
    with (
        ScriptedReceiver() as receiver,
        running_function(
            "alert_dispatcher",
            dispatcher_env([json_webhook("risk", receiver.url("/risk"))]),
            bundle=bundles["dist"] / "alert_dispatcher",
            python=bundles["python"]["alert_dispatcher"],
        ) as function,
    ):
        not_an_event = requests.post(function.url, json={"hello": 1}, timeout=10)
        assert not_an_event.status_code == 400 and "parsing CloudEvent failed" in not_an_event.text
        assert _dispatch(function.url, b"{not json", message_id="m-bad").status_code == 200
        assert _dispatch(function.url, sample("fraud_alert", alert_id="")).status_code == 200
        errors = [line for line in function.log_lines() if line["severity"] == "ERROR"]
    assert receiver.requests == []
    assert [e["reason"].split(": ", 1)[0] for e in errors] == ["Pub/Sub message m-bad", "Pub/Sub message m-1"]
    assert "invalid JSON" in errors[0]["reason"] and "alert_id='': " in errors[1]["reason"]


@pytest.fixture
def ingest_output(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Pub/Sub emulator when there is one (PUBSUB_EMULATOR_HOST or installed); otherwise the
    function's file output stands in for Pub/Sub, and the test says so."""
    try:
        emulator = request.getfixturevalue("pubsub")
    except pytest.skip.Exception as reason:
        print(f"ingest publishes to the file output (test double of Pub/Sub): {reason}")
        return {
            "kind": "file",
            "env": {"STREAMFORGE_INGEST_OUTPUT": f"file://{tmp_path / 'out'}"},
            "dir": tmp_path / "out",
        }
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator)  # for the clients below
    project = f"ingest-{uuid.uuid4().hex[:8]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    subscriptions = {}
    for stream in ("clickstream", "orders"):  # subscriptions first: the emulator drops what nobody reads
        topic = publisher.create_topic(name=publisher.topic_path(project, stream)).name
        subscriptions[stream] = subscriber.create_subscription(
            name=subscriber.subscription_path(project, f"{stream}-test"), topic=topic
        ).name
    print(f"ingest publishes to the Pub/Sub emulator at {emulator}, project {project}")
    return {
        "kind": "pubsub",
        "subscriber": subscriber,
        "subscriptions": subscriptions,
        "env": {"STREAMFORGE_INGEST_OUTPUT": f"pubsub://{project}", "PUBSUB_EMULATOR_HOST": emulator},
    }


def _published(output: dict[str, Any], stream: str, count: int) -> list[dict[str, Any]]:
    if output["kind"] == "pubsub":
        return pull_messages(output["subscriber"], output["subscriptions"][stream], count=count, timeout=60)
    lines = (output["dir"] / f"{stream}.jsonl").read_text().splitlines()
    return [{"data": json.loads(line), "attributes": None} for line in lines]


def test_packaged_ingest_rejects_bad_keys_bodies_and_events_and_publishes_the_good_ones(bundles, ingest_output) -> None:
    good_clicks = [sample("clickstream_event", event_id=f"c-{i}") for i in range(3)]
    bad_click = sample("clickstream_event", event_id="c-bad", device_type="fridge")
    replay = write_config(
        bundles["dist"] / "replay.toml", REPLAY_CONFIG + '[ingest]\nallowed_origins = ["https://shop.example.com"]\n'
    )
    browser_key = "browser-key-0123456789abcdef"
    with running_function(
        "ingest",
        {
            "STREAMFORGE_INGEST_API_KEYS": f"server:{API_KEY}, browser:{browser_key}",
            "STREAMFORGE_CONFIG": str(replay),
            **ingest_output["env"],
        },
        bundle=bundles["dist"] / "ingest",
        python=bundles["python"]["ingest"],
    ) as function:

        def post(body: bytes, **headers: str) -> requests.Response:
            return requests.post(
                function.url, data=body, timeout=30, headers={"Content-Type": "application/json", **headers}
            )

        assert post(b"{}", **{"X-API-Key": "wrong-key-0123456789"}).status_code == 401
        # A browser key is public: no orders, and only from an allowed page (a hostile caller's tries)
        origin = {"X-API-Key": browser_key, "Origin": "https://shop.example.com"}
        as_browser = post(json.dumps({"orders": [ORDER]}).encode(), **origin)
        assert as_browser.status_code == 403 and "a browser key may send clickstream events only" in as_browser.text
        no_origin = post(json.dumps({"clickstream": [CLICK]}).encode(), **{"X-API-Key": browser_key})
        assert no_origin.status_code == 403 and "no Origin header" in no_origin.text
        forged = post(json.dumps({"clickstream": [CLICK]}).encode(), **{**origin, "Origin": "https://evil.example"})
        assert forged.status_code == 403
        oversized = post(b" " * 2_000_000, **{"X-API-Key": API_KEY})
        assert oversized.status_code == 413 and "over the limit of 1,048,576 bytes" in oversized.json()["error"]
        assert post(b"[not json", **{"X-API-Key": API_KEY}).status_code == 400
        batch = {"clickstream": good_clicks[:1] + [bad_click] + good_clicks[1:], "orders": [ORDER, {"event_id": 7}]}
        response = post(json.dumps(batch).encode(), **{"X-API-Key": API_KEY, "Origin": "https://shop.example.com"})
        assert response.status_code == 207
        assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
        body = response.json()
        assert (body["accepted"], body["rejected"], body["failed"]) == (4, 2, 0)
        assert "device_type='fridge'" in body["results"]["clickstream"][1]["reason"]
        clicks = _published(ingest_output, "clickstream", 3)
        orders = _published(ingest_output, "orders", 1)
    assert sorted(m["data"]["event_id"] for m in clicks) == [KEY_PREFIX + f"c-{n}" for n in range(3)]
    assert [m["data"] for m in orders] == [{**ORDER, "event_id": KEY_PREFIX + ORDER["event_id"]}]
    if ingest_output["kind"] == "pubsub":
        attributes = {m["data"]["event_id"]: m["attributes"] for m in clicks}
        assert attributes[KEY_PREFIX + "c-0"] == {
            "event_id": KEY_PREFIX + "c-0",
            "event_time": CLICK["event_time"],
            "schema": "clickstream_event",
            "encoding": "json",
            "received_at": body["received_at"],
        }


def test_the_package_command_builds_both_folders_and_says_how_to_deploy(tmp_path) -> None:
    result = subprocess.run(
        [str(STREAMFORGE), "functions", "package", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=entry_point_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name, entry in (("alert_dispatcher", "dispatch_alert"), ("ingest", "ingest")):
        assert (tmp_path / f"{name}.zip").is_file() and (tmp_path / name / "wheels" / WHEEL_NAME).is_file()
        assert f"--source={tmp_path / name} --entry-point={entry}" in result.stdout
    # Eventarc drops an event whose function failed unless the trigger retries
    dispatcher_line = next(line for line in result.stdout.splitlines() if "--entry-point=dispatch_alert" in line)
    assert dispatcher_line.endswith("--trigger-topic=fraud-alerts --retry")


def _trickle(conn, receiver: RawReceiver) -> None:
    """A 200 whose answer comes a byte every 0.2 s: each read is quick, the whole takes 8 s."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def test_packaged_dispatcher_bounds_a_trickling_receiver_and_refuses_inward_urls(bundles, tmp_path) -> None:
    """A hostile receiver cannot hold the function past its timeout; a webhook pointing at the
    metadata server does not start at all."""
    write_config(tmp_path / "fast.toml", '[alert_dispatcher]\nwebhook_timeout = "1s"\n')
    with (
        RawReceiver(_trickle) as receiver,
        running_function(
            "alert_dispatcher",
            dispatcher_env([json_webhook("slowloris", receiver.url())], STREAMFORGE_CONFIG=str(tmp_path / "fast.toml")),
            bundle=bundles["dist"] / "alert_dispatcher",
            python=bundles["python"]["alert_dispatcher"],
        ) as function,
    ):
        started = time.perf_counter()
        assert _dispatch(function.url, {**ALERT, "alert_id": "a-trickle"}).status_code == 500  # retried later
        assert time.perf_counter() - started < 2.5  # not the 8 s the answer takes
        (line,) = [line for line in function.log_lines() if line.get("webhook") == "slowloris"]
    assert line["reason"] == "timeout after 1 s"
    metadata = dispatcher_env([json_webhook("meta", "https://169.254.169.254/computeMetadata/v1/")])
    with pytest.raises(RuntimeError, match="(?s)server exited.*169.254.169.254 is link-local"):
        with running_function(
            "alert_dispatcher",
            metadata,
            bundle=bundles["dist"] / "alert_dispatcher",
            python=bundles["python"]["alert_dispatcher"],
        ):
            pass
