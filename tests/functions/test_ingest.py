"""The ingest endpoint through functions-framework's test client: authentication, limits,
CORS, per-event answers, and exactly the valid events in the output (local files here; the
Pub/Sub emulator in test_processes.py)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamforge.config import load_config
from streamforge.functions.ingest import FAILED_REASON, IngestConfigError, IngestService, parse_api_keys
from streamforge.functions.outputs import FileOutput, OutputError
from tests.support.functions import API_KEY, KEY_PREFIX, REPLAY_CONFIG, write_config
from tests.support.samples import CLICK, ORDER, sample

HEADERS = {"X-API-Key": API_KEY}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "ingest"


@pytest.fixture
def client(function_client, out, tmp_path):
    return function_client(
        "ingest",
        STREAMFORGE_INGEST_API_KEYS=f"old-key-0123456789abc, {API_KEY}",
        STREAMFORGE_INGEST_OUTPUT=f"file://{out}",
        STREAMFORGE_CONFIG=str(write_config(tmp_path / "replay.toml", REPLAY_CONFIG)),
    )


def _simulated(run: Path, clicks: int, orders: int) -> tuple[list[dict], list[dict]]:
    with open(run / "clickstream.jsonl") as c, open(run / "orders.jsonl") as o:
        return [json.loads(next(c)) for _ in range(clicks)], [json.loads(next(o)) for _ in range(orders)]


def test_valid_events_are_published_and_bad_ones_answered_with_the_reason(client, out, default_run) -> None:
    clicks, orders = _simulated(default_run, 150, 40)
    bad_click = {**clicks[3], "event_id": "bad-1", "quantity": -2}
    bad_order = {**orders[1], "event_id": "bad-2", "total_amount": 1.0}
    batch = {"clickstream": clicks[:3] + [bad_click, "not an event"] + clicks[3:], "orders": [bad_order] + orders}
    response = client.post("/", headers=HEADERS, json=batch)
    assert response.status_code == 207
    body = response.get_json()
    assert (body["accepted"], body["rejected"], body["failed"]) == (190, 3, 0)
    assert body["accepted"] + body["rejected"] == len(batch["clickstream"]) + len(batch["orders"])
    rejected = {
        (stream, e["index"]): e
        for stream, entries in body["results"].items()
        for e in entries
        if e["status"] == "rejected"
    }
    assert set(rejected) == {("clickstream", 3), ("clickstream", 4), ("orders", 0)}
    assert rejected["clickstream", 3]["event_id"] == "bad-1"
    assert "quantity=-2: must be >= 1" in rejected["clickstream", 3]["reason"]
    assert rejected["clickstream", 4]["reason"] == "clickstream[4] is not a JSON object"
    assert "total_amount" in rejected["orders", 0]["reason"]
    # The output holds exactly the valid events, unchanged but for the event_id in the key's namespace.
    assert [e["event_id"] for e in _lines(out / "clickstream.jsonl")] == [KEY_PREFIX + e["event_id"] for e in clicks]
    assert _lines(out / "orders.jsonl") == [{**o, "event_id": KEY_PREFIX + o["event_id"]} for o in orders]
    assert datetime.fromisoformat(body["received_at"]) > datetime.now(timezone.utc) - timedelta(minutes=1)


def test_statuses_all_some_and_none_accepted(client) -> None:
    assert client.post("/", headers=HEADERS, json={"clickstream": [CLICK]}).status_code == 200
    assert client.post("/", headers=HEADERS, json={"orders": [sample("order_event", status="LOST")]}).status_code == 422


def test_an_event_id_twice_in_one_batch_and_events_from_the_future(client, out) -> None:
    future = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    batch = {"clickstream": [CLICK, CLICK, sample("clickstream_event", event_id="f-1", event_time=future)]}
    entries = client.post("/", headers=HEADERS, json=batch).get_json()["results"]["clickstream"]
    assert [e["status"] for e in entries] == ["accepted", "rejected", "rejected"]
    assert entries[1]["reason"] == "duplicate event_id: same as clickstream[0]"
    assert "ahead of the server clock (at most 5m)" in entries[2]["reason"]
    assert len(_lines(out / "clickstream.jsonl")) == 1


def test_events_older_than_the_bound_or_at_epoch_zero_are_rejected(function_client, out) -> None:
    client = function_client(
        "ingest", STREAMFORGE_INGEST_API_KEYS=API_KEY, STREAMFORGE_INGEST_OUTPUT=f"file://{out}", STREAMFORGE_CONFIG=""
    )  # the defaults: max_event_age 7 days
    now = datetime.now(timezone.utc)
    times = [now - timedelta(days=8), datetime(1970, 1, 1, tzinfo=timezone.utc), now - timedelta(days=6)]
    batch = {
        "clickstream": [
            sample("clickstream_event", event_id=f"t-{i}", event_time=t.isoformat()) for i, t in enumerate(times)
        ]
    }
    entries = client.post("/", headers=HEADERS, json=batch).get_json()["results"]["clickstream"]
    assert [e["status"] for e in entries] == ["rejected", "rejected", "accepted"]
    assert "pipelines.max_event_age before now): not a real time" in entries[0]["reason"]
    assert entries[1]["reason"].startswith("event_time 1970-01-01T00:00:00.000Z is before ")
    assert [e["event_id"] for e in _lines(out / "clickstream.jsonl")] == [KEY_PREFIX + "t-2"]


@pytest.mark.parametrize(
    "headers, error",
    [
        ({}, "missing X-API-Key header"),
        ({"X-API-Key": "guess-guess-guess-guess"}, "invalid API key"),
        ({"X-API-Key": API_KEY[:-1]}, "invalid API key"),
    ],
)
def test_requests_without_a_valid_key_are_refused(client, out, headers, error) -> None:
    response = client.post("/", headers=headers, json={"clickstream": [CLICK]})
    assert (response.status_code, response.get_json()) == (401, {"error": error})
    assert not (out / "clickstream.jsonl").exists() or _lines(out / "clickstream.jsonl") == []


def test_both_keys_of_a_rotation_work(client) -> None:
    for key in ("old-key-0123456789abc", API_KEY):
        assert client.post("/", headers={"X-API-Key": key}, json={"clickstream": [CLICK]}).status_code == 200


@pytest.mark.parametrize(
    "data, content_type, status, error",
    [
        (b"{not json", "application/json", 400, "body is not valid JSON"),
        (b"[1, 2]", "application/json", 400, "body must be a JSON object with the lists clickstream, orders, got list"),
        (b'{"clicks": []}', "application/json", 400, "unknown key 'clicks'"),
        (b"{}", "application/json", 400, "body holds none of the lists"),
        (b'{"orders": {"a": 1}}', "application/json", 400, "'orders' must be a list of events, got dict"),
        (b'{"orders": [], "clickstream": []}', "application/json", 400, "the batch holds no events"),
        (b"{}", "text/plain", 415, "Content-Type must be application/json, got 'text/plain'"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_clear_message(client, data, content_type, status, error) -> None:
    response = client.post("/", headers=HEADERS, data=data, content_type=content_type)
    assert response.status_code == status and error in response.get_json()["error"]


def test_compressed_bodies_and_other_methods(client) -> None:
    response = client.post(
        "/", headers={**HEADERS, "Content-Encoding": "gzip"}, data=b"\x1f\x8b", content_type="application/json"
    )
    assert response.status_code == 415 and "gzip" in response.get_json()["error"]
    response = client.get("/", headers=HEADERS)
    assert response.status_code == 405 and response.headers["Allow"] == "POST, OPTIONS"


def test_body_and_batch_limits(function_client, out, tmp_path) -> None:
    config = write_config(
        tmp_path / "c.toml", REPLAY_CONFIG + "[ingest]\nmax_body_bytes = 4096\nmax_batch_events = 3\n"
    )
    client = function_client(
        "ingest",
        STREAMFORGE_INGEST_API_KEYS=API_KEY,
        STREAMFORGE_INGEST_OUTPUT=f"file://{out}",
        STREAMFORGE_CONFIG=str(config),
    )
    data = json.dumps({"clickstream": [CLICK] * 20}).encode()
    response = client.post("/", headers=HEADERS, data=data, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == f"body of {len(data):,} bytes is over the limit of 4,096 bytes"
    small = [sample("clickstream_event", event_id=f"e{i}") for i in range(4)]
    response = client.post("/", headers=HEADERS, json={"clickstream": small[:2], "orders": [ORDER, ORDER]})
    assert response.status_code == 413
    assert response.get_json()["error"] == "4 events in one request; the limit is 3: split the batch"
    assert not (out / "clickstream.jsonl").exists() or _lines(out / "clickstream.jsonl") == []


def test_a_body_without_content_length_is_cut_at_the_limit(tmp_path) -> None:
    service = IngestService(load_config().ingest, (API_KEY,), FileOutput(tmp_path), timedelta(minutes=5))
    endless = io.BytesIO(b"[" + b"1," * 2_000_000)  # chunked: no Content-Length to refuse it early
    answer = service.handle("POST", {"X-API-Key": API_KEY, "Content-Type": "application/json"}, endless, None)
    assert answer.status == 413 and answer.body == {"error": "body is over the limit of 1,048,576 bytes"}
    assert endless.tell() == 1_048_577  # read no further than the limit


def test_cors_for_allowed_origins_only(function_client, out, tmp_path) -> None:
    config = write_config(
        tmp_path / "c.toml", REPLAY_CONFIG + '[ingest]\nallowed_origins = ["https://shop.example.com"]\n'
    )
    client = function_client(
        "ingest",
        STREAMFORGE_INGEST_API_KEYS=API_KEY,
        STREAMFORGE_INGEST_OUTPUT=f"file://{out}",
        STREAMFORGE_CONFIG=str(config),
    )
    preflight = client.options(
        "/",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type, X-API-Key"
    assert preflight.headers["Vary"] == "Origin"
    post = client.post("/", headers={**HEADERS, "Origin": "https://shop.example.com"}, json={"clickstream": [CLICK]})
    assert post.status_code == 200 and post.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    refused = client.options(
        "/", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    denied = client.post("/", headers={**HEADERS, "Origin": "https://evil.example.net"}, json={"clickstream": [CLICK]})
    assert denied.status_code == 403 and "'https://evil.example.net' is not allowed" in denied.get_json()["error"]


class _FlakyOutput:
    """Confirms every other message, and says why the others failed as Pub/Sub and the file
    output do: with internals (a resource path, a directory) a client must never see."""

    def publish(self, messages, timeout):
        return [
            None
            if i % 2 == 0
            else "Pub/Sub publish failed: NotFound: 404 Resource not found "
            "(resource=projects/internal-prj/topics/clickstream); write to /srv/ingest failed"
            for i in range(len(messages))
        ]

    def describe(self) -> str:
        return "flaky"


def test_events_the_output_did_not_confirm_are_failed_and_the_cause_is_logged_not_answered(capsys) -> None:
    service = IngestService(load_config().ingest, (API_KEY,), _FlakyOutput(), timedelta(minutes=5))
    events = [sample("clickstream_event", event_id=f"e{i}") for i in range(4)]
    data = json.dumps({"clickstream": events}).encode()
    answer = service.handle(
        "POST", {"X-API-Key": API_KEY, "Content-Type": "application/json"}, io.BytesIO(data), len(data)
    )
    assert answer.status == 503 and answer.headers["Retry-After"] == "5"
    assert [e["status"] for e in answer.body["results"]["clickstream"]] == ["accepted", "failed", "accepted", "failed"]
    assert answer.body["results"]["clickstream"][1]["reason"] == FAILED_REASON
    assert b"internal-prj" not in answer.json() and b"/srv/ingest" not in answer.json()
    (logged,) = [
        line
        for line in map(json.loads, capsys.readouterr().out.splitlines())
        if line["message"] == "ingest output failed"
    ]
    assert logged["failed"] == 2 and "internal-prj" in logged["cause"] and logged["severity"] == "ERROR"


@pytest.mark.parametrize(
    "batch, echoed",
    [
        ({"K" * 500_000: []}, "unknown key 'KKKK"),
        ({"clickstream": [{**CLICK, "event_id": "K" * 500_000}]}, "event_id='KKKK"),
        ({"clickstream": [{**CLICK, "event_id": "K" * 65}]}, "longer than 64 characters"),
    ],
)
def test_what_a_client_sent_is_echoed_only_in_short(client, batch, echoed) -> None:
    response = client.post("/", headers=HEADERS, json=batch)
    assert response.status_code in (400, 422) and echoed in response.get_data(as_text=True)
    assert len(response.get_data()) < 1000  # was the whole key or id: a 500 KB answer
    if response.status_code == 422:
        assert response.get_json()["results"]["clickstream"][0]["event_id"] is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["clickstream", "orders", "event_id", "items", "x"]), inner, max_size=4
                )
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_no_body_makes_a_5xx(tmp_path_factory, body) -> None:
    service = IngestService(
        load_config().ingest, (API_KEY,), FileOutput(tmp_path_factory.mktemp("fuzz")), timedelta(minutes=5)
    )
    answer = service.handle(
        "POST", {"X-API-Key": API_KEY, "Content-Type": "application/json"}, io.BytesIO(body), len(body)
    )
    assert answer.status < 500
    if answer.status in (200, 207, 422):
        counts = answer.body
        total = sum(len(v) for v in counts["results"].values())
        assert counts["accepted"] + counts["rejected"] + counts["failed"] == total


@pytest.mark.parametrize(
    "env, message",
    [
        ({"STREAMFORGE_INGEST_OUTPUT": "file:///tmp/x"}, "STREAMFORGE_INGEST_API_KEYS is not set"),
        (
            {"STREAMFORGE_INGEST_API_KEYS": "short", "STREAMFORGE_INGEST_OUTPUT": "file:///tmp/x"},
            "key #1 is shorter than 16",
        ),
        ({"STREAMFORGE_INGEST_API_KEYS": API_KEY}, "set STREAMFORGE_INGEST_OUTPUT"),
        (
            {"STREAMFORGE_INGEST_API_KEYS": API_KEY, "STREAMFORGE_INGEST_OUTPUT": "s3://bucket"},
            "expected pubsub://PROJECT or file://DIR",
        ),
    ],
)
def test_a_misconfigured_ingest_fails_at_start(env, message, monkeypatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises((IngestConfigError, OutputError), match=message):
        IngestService.from_environment(env)


def _service(output, clock=None, **settings) -> IngestService:
    config = replace(load_config().ingest, **settings)
    keys = parse_api_keys(f"server:{API_KEY}, browser:browser-key-0123456789, server:other-server-key-0123456789")
    return IngestService(config, keys, output, timedelta(minutes=5), clock=clock or (lambda: 0.0))


def _post(service: IngestService, key: str, batch: dict, **headers: str):
    data = json.dumps(batch).encode()
    return service.handle(
        "POST", {"X-API-Key": key, "Content-Type": "application/json", **headers}, io.BytesIO(data), len(data)
    )


def test_keys_have_roles_and_a_browser_key_sends_clicks_only(tmp_path) -> None:
    assert [(k.role, k.secret) for k in parse_api_keys("browser:b-key-0123456789abcdef, s-key-0123456789abcdef")] == [
        ("browser", "b-key-0123456789abcdef"),
        ("server", "s-key-0123456789abcdef"),
    ]
    service = _service(FileOutput(tmp_path))
    orders = _post(service, "browser-key-0123456789", {"orders": [ORDER]})
    assert orders.status == 403 and "a browser key may send clickstream events only, not orders" in orders.body["error"]
    assert _post(service, "browser-key-0123456789", {"clickstream": [CLICK]}).status == 200
    assert _post(service, API_KEY, {"orders": [ORDER]}).status == 200


def test_a_browser_key_needs_an_allowed_origin_when_there_is_an_allowlist(tmp_path) -> None:
    service = _service(FileOutput(tmp_path), allowed_origins=("https://shop.example.com",))
    batch = {"clickstream": [CLICK]}
    assert _post(service, "browser-key-0123456789", batch).status == 403  # curl, a script: no Origin
    assert _post(service, "browser-key-0123456789", batch, Origin="https://evil.example").status == 403
    assert _post(service, "browser-key-0123456789", batch, Origin="https://shop.example.com").status == 200
    assert _post(service, API_KEY, batch).status == 200  # a server has no Origin


def test_each_key_has_a_rate_limit_answered_429_with_retry_after(tmp_path) -> None:
    now = [0.0]
    service = _service(
        FileOutput(tmp_path), clock=lambda: now[0], browser_events_per_second=2.0, burst=timedelta(seconds=2)
    )
    clicks = [sample("clickstream_event", event_id=f"r-{i}") for i in range(5)]
    assert _post(service, "browser-key-0123456789", {"clickstream": clicks[:4]}).status == 200  # the burst: 4
    limited = _post(service, "browser-key-0123456789", {"clickstream": clicks[4:]})
    assert (limited.status, limited.headers["Retry-After"]) == (429, "1")
    assert _post(service, API_KEY, {"clickstream": clicks[4:]}).status == 200  # another key's bucket
    now[0] = 0.5
    assert _post(service, "browser-key-0123456789", {"clickstream": clicks[4:]}).status == 200
    assert len(_lines(tmp_path / "clickstream.jsonl")) == 6


def test_clients_cannot_claim_each_others_event_ids(tmp_path) -> None:
    """The same event_id from two keys is two events downstream: a squatter cannot make the
    genuine one a duplicate; the same key sending it again is one event (a retry)."""
    service = _service(FileOutput(tmp_path))
    for key in (API_KEY, "other-server-key-0123456789", API_KEY):
        assert _post(service, key, {"clickstream": [CLICK]}).status == 200
    published = [e["event_id"] for e in _lines(tmp_path / "clickstream.jsonl")]
    assert published == [
        KEY_PREFIX + CLICK["event_id"],
        hashlib.sha256(b"other-server-key-0123456789").hexdigest()[:8] + "." + CLICK["event_id"],
        KEY_PREFIX + CLICK["event_id"],
    ]
    too_long = _post(service, API_KEY, {"clickstream": [{**CLICK, "event_id": "x" * 56}]})
    assert "through ingest at most 55" in too_long.body["results"]["clickstream"][0]["reason"]


@pytest.mark.parametrize(
    "encode",
    [lambda b: json.dumps(b).encode(), lambda b: json.dumps(b, ensure_ascii=False).encode()],
    ids=["escaped", "raw-utf8"],
)
def test_hidden_characters_are_refused_however_the_body_spells_them(tmp_path, encode) -> None:
    service = _service(FileOutput(tmp_path))
    data = encode({"clickstream": [{**CLICK, "geo_region": "\u202eus-east"}, CLICK]})
    answer = service.handle(
        "POST", {"X-API-Key": API_KEY, "Content-Type": "application/json"}, io.BytesIO(data), len(data)
    )
    assert [e["status"] for e in answer.body["results"]["clickstream"]] == ["rejected", "accepted"]
    assert "contains U+202E RIGHT-TO-LEFT OVERRIDE" in answer.body["results"]["clickstream"][0]["reason"]
